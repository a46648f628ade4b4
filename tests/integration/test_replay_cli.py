"""`govbus replay` as users run it: byte-identical JSON on stdout, errors by line, --verify."""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from bus.eventlog import LogEvent, read_log, write_log

LOGS = Path(__file__).parent.parent / "logs"


async def govbus(*args: str) -> tuple[int, bytes, str]:
    exe = shutil.which("govbus", path=str(Path(sys.executable).parent)) or "govbus"
    proc = await asyncio.create_subprocess_exec(
        exe, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


async def test_replay_prints_the_final_state_the_same_every_time():
    runs = [await govbus("replay", str(LOGS / "resources.jsonl")) for _ in range(2)]
    (code, out, err), (code2, out2, _) = runs
    assert (code, code2) == (0, 0), err
    assert out == out2
    state = orjson.loads(out)
    assert list(state) == ["at", "index", "instances", "protection", "resources"]  # sorted
    assert state["at"] == "2026-01-01T12:00:19.010000Z"
    assert [r["name"] for r in state["resources"]] == ["net-1", "vm-1", "vol-1"]
    assert out == orjson.dumps(state, option=orjson.OPT_SORT_KEYS) + b"\n"


def run_cli(*args: str) -> tuple[int, bytes, str]:
    """`govbus …` in this process (the exit code, stdout, stderr), for the quick checks."""
    from typer.testing import CliRunner

    from govbus.cli import _register, app

    _register()
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout_bytes, result.stderr


def test_a_malformed_line_is_a_one_line_error_with_its_number(tmp_path):
    text = (LOGS / "drain.jsonl").read_bytes().splitlines(keepends=True)
    text[4] = b'{"specversion": "1.0", "id": "x", "type": "registry.heartbeat", "source": "w"}\n'
    (tmp_path / "bad.jsonl").write_bytes(b"".join(text))
    code, out, err = run_cli("replay", str(tmp_path / "bad.jsonl"))
    assert code == 1
    assert out == b""
    where = tmp_path / "bad.jsonl"
    assert err.strip().splitlines() == [
        f"govbus: error: malformed log: {where}:5: 'time' must be a non-empty string"
    ]
    code, _, err = run_cli("replay", str(tmp_path / "missing.jsonl"))
    assert code == 2 and "no such log file" in err


def test_verify_exits_non_zero_and_lists_what_differs(tmp_path):
    events = list(read_log(LOGS / "expiry.jsonl"))
    wrong = LogEvent(
        "f" * 8 + "-0000-5000-8000-" + "0" * 12,
        "registry.instance.expired",
        "govbus/discovery",
        events[-1].time,
        {"service": "web", "instance_id": "web-1"},
    )
    write_log(tmp_path / "wrong.jsonl", [*events, wrong])
    code, out, err = run_cli("replay", "--verify", str(tmp_path / "wrong.jsonl"))
    assert code == 1
    assert orjson.loads(out)["instances"]  # the state is printed all the same
    problems = [line for line in err.splitlines() if line.startswith("verify: ")]
    kinds = sorted(line.split()[1] for line in problems[:-1])
    assert kinds == ["extra"] * 8 + ["missing"]
    assert "missing registry.instance.expired ffffffff-0000-5000-8000-000000000000" in err
    assert problems[-1].endswith("9 difference(s)")


def test_a_long_log_shows_progress_on_stderr_only(tmp_path):
    """Logs of a megabyte or more get a progress bar; stdout stays the JSON state alone."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    register = {"service": "web", "instance_id": "web-1", "address": "10.0.0.1", "port": 80}
    events = [LogEvent("reg", "registry.register", "web", start, register)]
    for i in range(5_000):
        data = {"service": "web", "instance_id": "web-1", "note": "x" * 100}
        events.append(
            LogEvent(
                f"hb-{i}", "registry.heartbeat", "web", start + timedelta(seconds=i / 100), data
            )
        )
    write_log(tmp_path / "long.jsonl", events)
    assert (tmp_path / "long.jsonl").stat().st_size > 1 << 20
    code, out, err = run_cli("replay", str(tmp_path / "long.jsonl"))
    assert code == 0, err
    state = orjson.loads(out)
    assert (
        state["index"] > 0
        and state["instances"][0]["last_heartbeat"] == "2026-01-01T00:00:49.990000Z"
    )
