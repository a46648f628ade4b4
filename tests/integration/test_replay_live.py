"""Live equals replay: a session on RabbitMQ, recorded as it happens, replays to the same state.

The comparison rule (docs/replay.md): the live state is taken right after the last event of
the session has been recorded and settled, at a moment when no worker timer is due (every
live instance heartbeated less than one ttl ago, the critical one is far from removal); the
replay's state is the one at the log's last event. Instances are compared by id (service,
status), resources by name (status, version, host), and `--verify` must find every event the
workers published live regenerated identically.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any, ClassVar

import pytest
from sqlalchemy import func, select

from bus.client import Bus
from bus.eventlog import read_log
from bus.message import parse_time
from bus.store import OutboxRow
from discovery_worker.bootstrap import bootstrap as discovery_bootstrap
from discovery_worker.config import SOURCE as DISCOVERY_SOURCE
from govbus.log import record_events
from govbus.replay import replay_log
from manager_worker import SOURCE as MANAGER_SOURCE
from manager_worker import bootstrap as manager_bootstrap
from schemas import Drain, Event, Heartbeat, Register
from tests._wait import eventually

pytestmark = pytest.mark.rabbitmq


class Marker(Event):
    """Published once the session is over; no worker listens to it, the recorder does."""

    TYPE: ClassVar[str] = "test.replay.marker"


async def live_state(client: Bus) -> dict[str, Any]:
    registry = await client.call("discovery.state", {})
    page = await client.call("manager.resources", {"limit": 500})
    return {
        "index": registry["index"],
        "instances": registry["instances"],
        "resources": page["items"],
    }


def summary(state: dict[str, Any]) -> dict[str, Any]:
    return {
        "instances": {i["instance_id"]: (i["service"], i["status"]) for i in state["instances"]},
        "resources": {
            r["name"]: (r["status"], r["version"], r["host"]) for r in state["resources"]
        },
    }


def lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_a_recorded_live_session_replays_to_the_live_state(vhost_url, tmp_path):
    log_path = tmp_path / "session.jsonl"
    url = vhost_url
    stop = asyncio.Event()
    started = asyncio.Event()
    file = open(log_path, "ab")  # noqa: SIM115
    recorder = asyncio.get_running_loop().create_task(
        record_events(url, file, stop=stop, started=started.set, handle_signals=False)
    )
    await asyncio.wait_for(started.wait(), 10)  # the recorder is bound before anything

    dbus = Bus(url, source=DISCOVERY_SOURCE)
    mbus = Bus(url, source=MANAGER_SOURCE)
    client = Bus(url, source="agent")
    for bus in (dbus, mbus, client):
        await bus.start()
    discovery = await discovery_bootstrap(bus=dbus, db_url=f"sqlite+aiosqlite:///{tmp_path}/d.db")
    manager = await manager_bootstrap(bus=mbus, db_url=f"sqlite+aiosqlite:///{tmp_path}/m.db")
    await discovery.start()
    await manager.start()
    beating = {"host-1": 0.1, "host-2": 0.8, "web-1": None}
    heartbeats: asyncio.Task[None] | None = None
    try:
        for service, name, ttl, after in (
            ("host", "host-1", 1.0, 60.0),
            ("host", "host-2", 3.0, 60.0),
            ("web", "web-1", 3.0, 60.0),
            ("web", "web-2", 1.0, 0.5),  # never heartbeats: critical, then expired
        ):
            await client.publish(
                Register(
                    service=service,
                    instance_id=name,
                    address="10.0.0.5",
                    port=8000,
                    ttl_s=ttl,
                    deregister_after_s=after,
                )
            )

        async def beat() -> None:
            while True:
                for name, load in list(beating.items()):
                    service = "host" if name.startswith("host") else "web"
                    await client.publish(Heartbeat(service=service, instance_id=name, load=load))
                await asyncio.sleep(0.1)  # an agent's heartbeat period: pacing, not a wait

        heartbeats = asyncio.get_running_loop().create_task(beat())
        await eventually(
            lambda: lines(log_path) >= 12, timeout=10, what="registrations and heartbeats"
        )

        async def loads_known() -> bool:  # the hosts' loads are known before a VM is placed
            loads = {i["instance_id"]: i["load"] for i in (await live_state(client))["instances"]}
            return loads.get("host-1") == 0.1 and loads.get("host-2") == 0.8

        await eventually(loads_known, interval=0.05, what="the hosts' loads")
        net = await client.call(
            "manager.create",
            {"spec": {"kind": "network", "name": "net-1", "cidr": "10.9.0.0/24"}},
        )
        assert net["status"] == "active"
        vm = await client.call(
            "manager.create",
            {
                "spec": {
                    "kind": "vm",
                    "name": "vm-1",
                    "vcpus": 2,
                    "memory_mb": 1024,
                    "image": "debian-12",
                }
            },
        )
        assert vm["host"] == "host-1"  # the least loaded host
        await client.call(
            "manager.update",
            {"name": "vm-1", "expected_version": vm["version"], "changes": {"vcpus": 4}},
        )
        await client.call(
            "manager.create",
            {"spec": {"kind": "volume", "name": "vol-1", "size_gb": 10, "attached_to": "vm-1"}},
        )
        await client.publish(Drain(service="web", instance_id="web-1"))
        del beating["host-1"]  # host-1 falls silent: critical after its 1 s ttl

        async def settled() -> bool:
            state = summary(await live_state(client))
            return (
                state["instances"].get("host-1") == ("host", "critical")
                and "web-2" not in state["instances"]
                and state["instances"].get("web-1") == ("web", "draining")
                and state["resources"].get("vol-1", ("",))[0] == "unreachable"
                and state["resources"].get("vm-1", ("",))[0] == "unreachable"
            )

        try:
            await eventually(settled, timeout=10, interval=0.1, what="the end state")
        except AssertionError:
            end = summary(await live_state(client))
            pytest.fail(f"the live session did not reach its end state: {end}")

        # The end: one last round of heartbeats, recorded, then the live state at once
        # (the next timer is host-2/web-1's ttl, 3 s away; host-1's removal, 60 s away).
        heartbeats.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeats
        heartbeats = None
        before = lines(log_path)
        await client.publish(Heartbeat(service="host", instance_id="host-2", load=0.8))
        await client.publish(Heartbeat(service="web", instance_id="web-1"))
        await eventually(lambda: lines(log_path) >= before + 2, timeout=10, what="the last beats")
        last_beats = {
            e.data["instance_id"]: e.time
            for e in read_log(log_path)
            if e.type == "registry.heartbeat"
        }
        seen: dict[str, Any] = {}

        async def applied() -> dict[str, Any] | None:  # until the workers applied them too
            live = await live_state(client)
            seen.clear()
            seen.update(
                (i["instance_id"], parse_time(i["last_heartbeat"]))
                for i in live["instances"]
                if i["instance_id"] in ("host-2", "web-1")
            )
            return live if seen == {k: last_beats[k] for k in ("host-2", "web-1")} else None

        try:
            live = await eventually(applied, interval=0.05, what="the last heartbeats")
        except AssertionError:
            pytest.fail(f"the workers did not apply the last heartbeats: {seen}")

        # Anything the last events caused is recorded too: discovery writes and publishes
        # what it derived, the manager has handled every delivery and relayed its outbox,
        # and then a marker published after all that reaches the log (the recorder's one
        # queue delivers in order, so whatever was published before it is recorded).
        await discovery.settle()

        async def manager_caught_up() -> bool:
            stats = manager.consumer.stats
            in_flight = stats.delivered - stats.handled - stats.ignored - stats.dead_lettered
            ready, _ = await mbus.transport.queue_state(manager.config.queue)
            async with manager.store.unit_of_work() as session:
                unsent = await session.scalar(
                    select(func.count()).select_from(OutboxRow).where(OutboxRow.sent == 0)
                )
            return ready == 0 and in_flight == 0 and unsent == 0

        await eventually(manager_caught_up, what="the manager to catch up")
        marker = await client.publish(Marker())
        await eventually(lambda: any(e.id == marker for e in read_log(log_path)), what="the marker")
    finally:
        if heartbeats is not None:
            heartbeats.cancel()
        await manager.stop()
        await discovery.stop()
        for bus in (client, mbus, dbus):
            await bus.close()
        stop.set()
        await recorder
        file.close()

    session = [e for e in read_log(log_path) if e.type != Marker.TYPE]
    outcome = await replay_log(session, verify=True)
    assert summary(outcome.state) == summary(live)
    assert [str(d) for d in outcome.differences] == []
    assert outcome.state["index"] == live["index"]
    assert outcome.command_errors == []
    # Beyond the rule, every field agrees: times come from events, resource ids are mapped.
    assert outcome.state["instances"] == sorted(live["instances"], key=lambda i: i["instance_id"])
    assert outcome.state["resources"] == sorted(live["resources"], key=lambda r: r["name"])
    assert {e.source for e in session} >= {"agent", DISCOVERY_SOURCE, MANAGER_SOURCE}
    assert outcome.state["at"] is not None
