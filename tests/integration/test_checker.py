"""Checkers with a discovery worker, on the embedded bus and on RabbitMQ: statuses from real
HTTP and TCP checks, thresholds, and two checkers sharing the checks."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from bus import Bus
from bus.errors import NotFound
from discovery_worker import SOURCE, DiscoveryConfig
from discovery_worker import bootstrap as discovery
from health_checker import SOURCE as CHECKER_SOURCE
from health_checker import Checker, CheckerConfig
from schemas import Register
from tests._targets import Targets
from tests._wait import eventually


class Stack:
    def __init__(self, url: str, unique: str, db: str) -> None:
        self.url, self.unique, self.db = url, unique, db
        self.rpc = f"{unique}.discovery"
        self.client = Bus(url, source=unique)
        self.checkers: list[Checker] = []
        self.results: list[dict[str, Any]] = []
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        await self.client.start()
        self._stack.push_async_callback(self.client.close)
        bus = Bus(self.url, source=SOURCE)
        await bus.start()
        self._stack.push_async_callback(bus.close)
        config = DiscoveryConfig(queue=f"{self.unique}.discovery", service=self.rpc)
        worker = await discovery(bus=bus, db_url=self.db, config=config)
        await worker.start()
        self._stack.push_async_callback(worker.stop)

        def seen(delivery: Any) -> None:
            data = orjson.loads(delivery.message.body)
            if data.get("service") == self.unique:
                self.results.append(data)

        await self.client.tap(["registry.check"], seen)

    async def checker(self) -> Checker:
        bus = Bus(self.url, source=CHECKER_SOURCE)
        await bus.start()
        self._stack.push_async_callback(bus.close)
        config = CheckerConfig(service=f"{self.unique}-chk", discovery=self.rpc, ttl_s=3)
        checker = Checker(bus=bus, config=config)
        await checker.start()
        self._stack.push_async_callback(checker.stop)
        self.checkers.append(checker)
        return checker

    async def instance(self, iid: str) -> dict[str, Any]:
        view = await self.client.call(f"{self.rpc}.instance", {"instance_id": iid})
        return view["instance"]

    async def register(self, iid: str, checks: list[dict[str, Any]]) -> None:
        event = Register(
            service=self.unique, instance_id=iid, address="127.0.0.1", port=80, ttl_s=0,
            checks=checks,
        )  # fmt: skip
        await self.client.publish(event)


@contextlib.asynccontextmanager
async def stack(url: str, unique: str, tmp_path: Any) -> AsyncIterator[Stack]:
    s = Stack(url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db")
    async with s._stack:
        await s.start()
        yield s


async def status_of(s: Stack, iid: str) -> str:
    return str((await s.instance(iid))["status"])


async def wait_status(s: Stack, iid: str, status: str, timeout: float = 15) -> None:
    """Ask the worker until `iid` has `status` (not registered yet counts as not yet)."""
    last = "not registered"

    async def reached() -> bool:
        nonlocal last
        with contextlib.suppress(NotFound):
            last = await status_of(s, iid)
        return last == status

    await eventually(
        reached, timeout=timeout, interval=0.05, what=lambda: f"{iid} {status} (it is {last})"
    )


@pytest.fixture
async def targets():
    async with Targets() as running:
        yield running


async def test_statuses_follow_http_and_tcp_checks(broker_url, unique, tmp_path, targets):
    async with stack(broker_url, unique, tmp_path) as s:
        await s.checker()
        port = int(targets.url.rsplit(":", 1)[1])
        closed = targets.closed_port()
        await s.register("web-1", [{"http": f"{targets.url}/status/200", "interval_s": 1}])
        await s.register("busy-1", [{"http": f"{targets.url}/status/429", "interval_s": 1}])
        await s.register("down-1", [{"http": f"{targets.url}/status/500", "interval_s": 1}])
        await s.register("db-1", [{"tcp": f"127.0.0.1:{port}", "interval_s": 1}])
        await s.register("gone-1", [{"tcp": f"127.0.0.1:{closed}", "interval_s": 1}])
        await wait_status(s, "web-1", "passing")
        await wait_status(s, "busy-1", "warning")
        await wait_status(s, "db-1", "passing")
        # Critical from the start: each said so once, when the checker first ran it.
        await eventually(lambda: {r["instance_id"] for r in s.results} >= {"down-1", "gone-1"})
        assert await status_of(s, "down-1") == "critical"
        assert await status_of(s, "gone-1") == "critical"
        down = [r for r in s.results if r["instance_id"] == "down-1"]
        assert down[0]["status"] == "critical" and "500" in down[0]["output"]


async def test_thresholds_apply_before_a_status_changes(broker_url, unique, tmp_path, targets):
    async with stack(broker_url, unique, tmp_path) as s:
        await s.checker()
        # Two passes; two failures (under the threshold of 3); a pass; three failures in a
        # row; then 200 for ever.
        targets.scripts["flaky"] = [200, 200, 500, 500, 200, 500, 500, 500]
        check = {
            "id": "h",
            "http": f"{targets.url}/script/flaky",
            "interval_s": 1,
            "failures_before_critical": 3,
            "successes_before_passing": 2,
        }
        await s.register("flaky-1", [check])
        await eventually(lambda: len(s.results) >= 4, timeout=40)
        # critical: the first verdict (one pass of two) announced when the checker took it;
        # passing after two passes; critical only after the third failure in a row; passing
        # after two passes again.
        assert [r["status"] for r in s.results] == ["critical", "passing", "critical", "passing"]
        assert len(targets.hits["flaky"]) >= 10
        await wait_status(s, "flaky-1", "passing")


async def test_two_checkers_share_twenty_instances(broker_url, unique, tmp_path, targets):
    async with stack(broker_url, unique, tmp_path) as s:
        a, b = await s.checker(), await s.checker()
        await eventually(lambda: len(a.members) == 2 and len(b.members) == 2, timeout=15)
        names = [f"i{n:02}" for n in range(20)]
        for name in names:
            await s.register(name, [{"http": f"{targets.url}/hit/{name}", "interval_s": 1}])
        await eventually(lambda: all(len(targets.hits[n]) >= 4 for n in names), timeout=30)
        # Each check is run by one of them (the checker names itself in its User-Agent), and
        # each of them runs some.
        assert a.owned and b.owned and not (a.owned & b.owned)
        assert len(a.owned | b.owned) == 20
        runners = {name: set(targets.agents[name]) for name in names}
        assert all(len(agents) == 1 for agents in runners.values()), runners
        assert set().union(*runners.values()) == {
            f"govbus-checker ({a.id})",
            f"govbus-checker ({b.id})",
        }


async def test_a_bad_check_on_the_bus_is_dead_lettered_naming_the_field(
    broker_url, unique, tmp_path
):
    async with stack(broker_url, unique, tmp_path) as s:
        base = {"service": unique, "address": "127.0.0.1", "port": 80}
        bad = {
            "url": {"http": "http://db:99999/health"},
            "interval": {"tcp": "db:5432", "interval_s": 0.5},
            "port": {"tcp": "db:0"},
        }
        for name, check in bad.items():
            data = {**base, "instance_id": f"{unique}-{name}", "checks": [check]}
            await s.client.publisher.publish_raw(
                "registry.register", data, event_id=f"{unique}-{name}"
            )
        reasons: dict[str, str] = {}

        def take(delivery: Any) -> None:
            message_id = str(delivery.message.message_id or "")
            if message_id.startswith(unique):
                error = str(delivery.message.headers["x-govbus-error"])
                reasons[message_id.removeprefix(unique + "-")] = error

        dlq = f"{unique}.discovery.dlq"
        sub = await s.client.transport.consume(dlq, take, prefetch=10)
        await eventually(lambda: len(reasons) == 3, timeout=10, what=f"3 dead letters: {reasons}")
        await sub.close()
        assert reasons["url"].startswith("invalid registry.register: checks.0.http: must be")
        assert reasons["interval"].startswith("invalid registry.register: checks.0.interval_s")
        assert reasons["port"].startswith("invalid registry.register: checks.0.tcp: must be")


async def test_a_hanging_target_does_not_hold_up_other_checks(
    broker_url, unique, tmp_path, targets
):
    async with stack(broker_url, unique, tmp_path) as s:
        await s.checker()
        hang = {"http": f"{targets.url}/hang", "interval_s": 1, "timeout_s": 300}
        await s.register("stuck-1", [hang])
        await s.register("fine-1", [{"http": f"{targets.url}/hit/fine", "interval_s": 1}])
        # The other check keeps its pace while the first run of the hanging one is still open.
        await eventually(lambda: len(targets.hits["fine"]) >= 4, timeout=20)
        await wait_status(s, "fine-1", "passing")
        assert await status_of(s, "stuck-1") == "critical"
        assert not [r for r in s.results if r["instance_id"] == "stuck-1"]  # no verdict yet
