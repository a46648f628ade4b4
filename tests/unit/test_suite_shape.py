"""The test suite's own conventions, checked on its source (docs/architecture.md, "Test
conventions"):

- a test waits for a condition (`tests._wait.eventually`/`wait_until`), never for a time: every
  `sleep` outside `tests/_wait.py` is in `ALLOWED_SLEEPS` below, with the reason time passing is
  the behaviour there, and no loop polls with a sleep of its own;
- test modules do not import other test modules (shared harnesses live in `tests/_*.py`);
- the private-vhost fixture `vhost_url` is defined once, in `tests/conftest.py`;
- no test asserts a rate (rates are measured in `benchmarks/`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]

# (module under tests/, function qualname) -> why a sleep there is the behaviour, not a guess.
ALLOWED_SLEEPS: dict[tuple[str, str], str] = {
    ("_targets.py", "Targets._big"): (
        "a deliberately slow HTTP target: a body paced so a client that stopped reading is seen"
    ),
    ("contract/test_bus.py", "test_events_are_processed_in_order.record"): (
        "a yield point inside the handler: concurrent handlers would break the order there"
    ),
    ("contract/test_bus.py", "echo_server.echo"): "a slow RPC method for the deadline test",
    ("contract/test_bus.py", "test_graceful_stop_finishes_in_flight_work.slow"): (
        "a handler still working while close() runs"
    ),
    ("contract/test_transport.py", "test_expired_messages_are_dropped"): (
        "a message TTL runs on the broker's real clock"
    ),
    ("faults/_harness.py", "Load.publish"): "a publisher's back-off while the broker is away",
    ("faults/_harness.py", "Load._lane"): "load generation pacing: the gap between ticks",
    ("faults/test_cluster.py", "publish_until_confirmed"): (
        "a publisher's back-off while the client fails over to a surviving node"
    ),
    (
        "faults/test_cluster.py",
        "test_losing_a_node_of_three_loses_nothing_and_the_components_move_on.load",
    ): "load generation pacing: the gap between one registration and report and the next",
    (
        "integration/test_edge.py",
        "test_no_worker_is_503_with_retry_after_and_slow_worker_is_504.hang",
    ): "a worker slower than the edge's RPC timeout",
    ("integration/test_manager_store.py", "test_the_relay_stops_when_woken_just_before_stop"): (
        "reproduces a race: the relay is inside its wait when notify() and stop() come"
    ),
    ("integration/test_reconnect.py", "test_tcp_reset_restores_consumers_and_calls"): (
        "one loop turn so the call's request is in flight when the connection is cut"
    ),
    (
        "integration/test_replay_live.py",
        "test_a_recorded_live_session_replays_to_the_live_state.beat",
    ): "an agent's heartbeat period",
    ("integration/test_replay_workers.py", "test_the_output_does_not_depend_on_the_wall_clock"): (
        "wall time must pass the workers' one-second write-behind interval"
    ),
    (
        "integration/test_replay_workers.py",
        "test_the_output_does_not_depend_on_the_wall_clock.stall",
    ): "blocks the loop so wall-clock timers fire at other moments",
    (
        "unit/test_replay_handlers.py",
        "test_a_step_that_never_settles_is_an_error_saying_what_is_busy.spin",
    ): "a task that is never done, so replay can never be quiescent",
    (
        "unit/test_replay_uvloop.py",
        "test_a_step_that_never_settles_is_an_error_on_uvloop_too.never_settles.spin",
    ): "a task that is never done, so replay can never be quiescent",
}

# The two polling loops of the suite.
WAIT_MODULE = "_wait.py"

# A name that holds a rate, or a division by a time difference.
_RATE_NAME = re.compile(r"(^|_)(rate|throughput)(_|$)|per_s(ec(ond)?)?$", re.I)
_CLOCKS = {"perf_counter", "monotonic", "time", "perf_counter_ns", "monotonic_ns"}


def _modules(root: Path) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(root.rglob("*.py")):
        yield path.relative_to(root).as_posix(), ast.parse(path.read_text(), str(path))


def _is_sleep(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return (isinstance(func, ast.Attribute) and func.attr == "sleep") or (
        isinstance(func, ast.Name) and func.id == "sleep"
    )


def _sleeps(tree: ast.Module) -> Iterator[tuple[str, ast.Call, list[ast.AST]]]:
    """Every sleep call with the qualname of its function and the loops around it."""

    def walk(
        node: ast.AST, names: list[str], loops: list[ast.AST]
    ) -> Iterator[tuple[str, ast.Call, list[ast.AST]]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                yield from walk(child, [*names, child.name], [])
            elif isinstance(child, (ast.For, ast.AsyncFor, ast.While)):
                yield from walk(child, names, [*loops, child])
            else:
                if _is_sleep(child):
                    yield ".".join(names), child, loops
                yield from walk(child, names, loops)

    yield from walk(tree, [], [])


def sleep_violations(root: Path) -> list[str]:
    found, used = [], set()
    for name, tree in _modules(root):
        if name == WAIT_MODULE:
            continue
        for qualname, call, loops in _sleeps(tree):
            where = f"tests/{name}:{call.lineno} {ast.unparse(call)} in {qualname or '<module>'}"
            if (name, qualname) in ALLOWED_SLEEPS:
                used.add((name, qualname))
            elif any(_is_range_loop(loop) for loop in loops):
                found.append(f"{where}: a `for ... in range` polling loop; use eventually()")
            elif loops:
                found.append(f"{where}: a polling loop with its own sleep; use eventually()")
            else:
                found.append(f"{where}: wait for a condition, or allow-list why time must pass")
    found += [
        f"ALLOWED_SLEEPS has a stale entry {key}: remove it"
        for key in ALLOWED_SLEEPS
        if key not in used
    ]
    return found


def _is_range_loop(loop: ast.AST) -> bool:
    return (
        isinstance(loop, (ast.For, ast.AsyncFor))
        and isinstance(loop.iter, ast.Call)
        and isinstance(loop.iter.func, ast.Name)
        and loop.iter.func.id == "range"
    )


def imports_of_test_modules(root: Path) -> list[str]:
    """Imports of a `test_*` module from anywhere in the suite."""
    found = []
    for name, tree in _modules(root):
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                module = node.module or ""
                targets = [module] + [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            for target in targets:
                last = target.rsplit(".", 1)[-1]
                relative = getattr(node, "level", 0) > 0
                if last.startswith("test_") and (target.startswith("tests") or relative):
                    found.append(f"tests/{name}:{node.lineno} imports {target}")
                    break
    return found


def vhost_fixture_definitions(root: Path) -> list[str]:
    """Definitions of `vhost_url`, or private vhosts made by hand, outside tests/conftest.py."""
    found = []
    for name, tree in _modules(root):
        if name == "conftest.py":
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                and node.name == "vhost_url"
            ):
                found.append(f"tests/{name}:{node.lineno} defines vhost_url")
            if (
                name != "_vhost.py"
                and isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "private_vhost"
            ):
                found.append(f"tests/{name}:{node.lineno} makes a private vhost; use vhost_url")
    return found


def _clock_call(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Call)
        and (
            (isinstance(n.func, ast.Attribute) and n.func.attr in _CLOCKS)
            or (isinstance(n.func, ast.Name) and n.func.id in _CLOCKS)
        )
        for n in ast.walk(node)
    )


def rate_assertions(root: Path) -> list[str]:
    """`assert`s on a rate: a rate-named value, or a count divided by a time difference."""
    found = []
    for name, tree in _modules(root):
        if name.startswith("unit/test_suite_shape"):
            continue
        rates: set[str] = set()  # names assigned a division by a clock reading
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.BinOp)
                and isinstance(node.value.op, ast.Div)
                and _clock_call(node.value.right)
            ):
                rates |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree):
            if not isinstance(node, ast.Assert):
                continue
            for n in ast.walk(node.test):
                named = (
                    n.id
                    if isinstance(n, ast.Name)
                    else n.attr
                    if isinstance(n, ast.Attribute)
                    else ""
                )
                divided = (
                    isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div) and _clock_call(n.right)
                )
                if divided or named in rates or (named and _RATE_NAME.search(named)):
                    found.append(
                        f"tests/{name}:{node.lineno} asserts a rate: {ast.unparse(node.test)}"
                    )
                    break
    return found


# --- the checks --------------------------------------------------------------------------------


def test_no_test_waits_for_a_time_instead_of_a_condition():
    assert sleep_violations(TESTS) == []


def test_no_test_module_imports_another():
    assert imports_of_test_modules(TESTS) == []


def test_vhost_url_is_the_one_private_vhost_fixture_in_conftest():
    assert vhost_fixture_definitions(TESTS) == []
    conftest = ast.parse((TESTS / "conftest.py").read_text())
    assert any(
        isinstance(n, ast.FunctionDef) and n.name == "vhost_url" for n in ast.walk(conftest)
    ), "tests/conftest.py defines vhost_url"


def test_no_test_asserts_a_rate():
    assert rate_assertions(TESTS) == []


def test_the_checks_see_what_they_forbid(tmp_path):
    """Each check on a small suite that breaks its convention (what tests/ looked like before)."""
    (tmp_path / "integration").mkdir()
    (tmp_path / "integration" / "test_a.py").write_text(
        "import asyncio, time\n"
        "from tests.integration.test_b import harness\n"
        "async def test_polls():\n"
        "    for _ in range(100):\n"
        "        if ready():\n"
        "            break\n"
        "        await asyncio.sleep(0.05)\n"
        "async def test_guesses():\n"
        "    await asyncio.sleep(0.2)\n"
        "def vhost_url():\n"
        "    yield 'amqp://'\n"
        "async def test_rate():\n"
        "    started = time.perf_counter()\n"
        "    rate = 10 / (time.perf_counter() - started)\n"
        "    assert rate > 15_000\n"
        "    assert events_per_s > 1\n"
    )
    sleeps = sleep_violations(tmp_path)
    assert any("range` polling loop" in v for v in sleeps)
    assert any("test_guesses" in v and "wait for a condition" in v for v in sleeps)
    assert imports_of_test_modules(tmp_path) == [
        "tests/integration/test_a.py:2 imports tests.integration.test_b"
    ]
    assert vhost_fixture_definitions(tmp_path) == [
        "tests/integration/test_a.py:10 defines vhost_url"
    ]
    assert len(rate_assertions(tmp_path)) == 2
