"""Replaying the example logs into the real discovery and manager workers (the `replay`
fixture), and what makes replay trustworthy: determinism and verification."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from bus.eventlog import LogEvent, read_log, write_log
from bus.replay import Replay
from govbus.replay import replay_log, start_workers

LOGS = Path(__file__).parent.parent / "logs"
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in state["instances"]}


async def test_a_silent_instance_goes_critical_then_expires(replay):
    await replay.start_workers()
    await replay.run(LOGS / "expiry.jsonl")
    state = await replay.state()
    assert sorted(by_id(state)) == ["web-1", "web-3"]
    assert {i["status"] for i in state["instances"]} == {"passing"}
    assert state["at"] == "2026-01-01T12:00:29.550000Z"
    web2 = [e for e in replay.produced if e.data.get("instance_id") == "web-2"]
    assert [(e.type, e.data.get("status"), e.data.get("reason"), e.time) for e in web2] == [
        ("registry.instance.status_changed", "passing", "registered", at(0.1)),
        ("registry.instance.status_changed", "critical", "heartbeat_missed", at(7.52)),
        ("registry.instance.expired", None, "heartbeat_missed", at(17.52)),
    ]


async def test_registrations_and_reported_health(replay):
    await replay.start_workers()
    await replay.run(LOGS / "registrations.jsonl")
    instances = by_id(await replay.state())
    assert {k: (v["service"], v["status"]) for k, v in instances.items()} == {
        "api-1": ("api", "warning"),
        "web-1": ("web", "passing"),
        "web-2": ("web", "passing"),
    }
    assert instances["web-2"]["weight"] == 3 and instances["web-2"]["load"] == 0.7
    picks = [await replay.call("discovery.pick", {"service": "web"}) for _ in range(4)]
    assert sorted(p["instance"]["instance_id"] for p in picks) == [
        "web-1",
        "web-1",
        "web-2",
        "web-2",
    ]


async def test_a_drained_instance_is_listed_but_never_picked(replay):
    await replay.start_workers()
    await replay.run(LOGS / "drain.jsonl")
    instances = by_id(await replay.state())
    assert {k: v["status"] for k, v in instances.items()} == {
        "api-1": "passing",
        "api-2": "draining",
    }
    for _ in range(3):
        picked = await replay.call("discovery.pick", {"service": "api"})
        assert picked["instance"]["instance_id"] == "api-1"
    assert replay.produced_types("registry.instance.deregistered") == [
        "registry.instance.deregistered"
    ]
    # api-3 kept sending heartbeats after it left: it is told to register again.
    assert [e.data["instance_id"] for e in replay.produced_of("registry.heartbeat.unknown")] == [
        "api-3"
    ]


async def test_resource_commands_are_rerun_and_a_silent_host_makes_them_unreachable(replay):
    await replay.start_workers()
    recorded = {
        e.data["resource"]["name"]: e.data["resource"]["id"]
        for e in read_log(LOGS / "resources.jsonl")
        if e.type == "resource.created"
    }
    await replay.run(LOGS / "resources.jsonl")
    state = await replay.state()
    resources = {r["name"]: r for r in state["resources"]}
    assert {k: (r["status"], r["version"], r["host"]) for k, r in resources.items()} == {
        "net-1": ("active", 1, None),
        "vm-1": ("unreachable", 4, "host-1"),  # created, placed, resized, host lost
        "vol-1": ("unreachable", 2, "host-1"),
    }
    assert resources["vm-1"]["vcpus"] == 4
    assert {k: r["id"] for k, r in resources.items()} == recorded  # reported as recorded
    assert by_id(state)["host-1"]["status"] == "critical"
    lost = replay.produced_of("resource.status_changed")
    assert [(e.data["resource"]["name"], e.data["reason"], e.time) for e in lost] == [
        ("vm-1", "placed", at(3.5)),
        ("vm-1", "host_critical", at(13)),
        ("vol-1", "host_critical", at(13)),
    ]
    (drift,) = replay.produced_of("resource.drift")
    assert drift.data["missing"] == [{"kind": "volume", "name": "vol-1", "status": "active"}]


# -- determinism ------------------------------------------------------------------------------


def dumps(state: dict[str, Any]) -> bytes:
    return orjson.dumps(state, option=orjson.OPT_SORT_KEYS)


async def test_the_same_log_twice_gives_identical_bytes():
    for name in ("expiry", "resources"):
        first = await replay_log(read_log(LOGS / f"{name}.jsonl"))
        second = await replay_log(read_log(LOGS / f"{name}.jsonl"))
        assert dumps(first.state) == dumps(second.state)


async def test_the_output_does_not_depend_on_the_wall_clock():
    """Run once undisturbed, once with the event loop stalled at random wall moments (a
    blocking task) so every wall-clock timer in the workers fires at other points."""
    calm = await replay_log(read_log(LOGS / "resources.jsonl"))

    async def stall() -> None:
        while True:
            time.sleep(0.003)  # blocks the loop: wall time jumps under the replay's feet
            await asyncio.sleep(0.001)

    task = asyncio.get_running_loop().create_task(stall())
    try:
        await asyncio.sleep(1.2)  # past the workers' one-second write-behind interval
        stalled = await replay_log(read_log(LOGS / "resources.jsonl"))
    finally:
        task.cancel()
    assert dumps(calm.state) == dumps(stalled.state)


async def test_the_order_of_unrelated_timers_does_not_matter():
    """Two instances register at the same moment with different ttls, in either order: their
    expiry timers are armed in opposite orders and the outcome is the same."""

    def log(first: str, second: str) -> list[LogEvent]:
        ttl = {"a-1": 1.0, "b-1": 1.5}
        events = [
            LogEvent(
                f"reg-{name}",
                "registry.register",
                name[0],
                at(0),
                {
                    "service": name[0],
                    "instance_id": name,
                    "address": "10.0.0.9",
                    "port": 80,
                    "ttl_s": ttl[name],
                    "deregister_after_s": 1.0,
                },
            )
            for name in (first, second)
        ]
        keepalive = {"service": "k", "instance_id": "k-1", "address": "10.0.0.9", "port": 1}
        events.append(LogEvent("reg-k", "registry.register", "k", at(0.5), keepalive))
        events.append(
            LogEvent(
                "hb-k", "registry.heartbeat", "k", at(5), {"service": "k", "instance_id": "k-1"}
            )
        )
        return events

    outcomes = []
    for order in (("a-1", "b-1"), ("b-1", "a-1")):
        async with Replay() as engine:
            await start_workers(engine)
            for event in log(*order):
                await engine.feed(event)
            state = await engine.state()
            changes = [
                (e.type, e.data.get("instance_id"), e.data.get("status"), e.time)
                for e in engine.produced
                if e.data.get("instance_id") in ("a-1", "b-1") and e.time > at(0)
            ]
            outcomes.append((dumps(state), changes))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][1] == [
        ("registry.instance.status_changed", "a-1", "critical", at(1)),
        ("registry.instance.status_changed", "b-1", "critical", at(1.5)),
        ("registry.instance.expired", "a-1", None, at(2)),
        ("registry.instance.expired", "b-1", None, at(2.5)),
    ]


# -- verification -----------------------------------------------------------------------------


async def recording_of(path: Path, tmp_path: Path) -> list[LogEvent]:
    """What `govbus record` would have written live: the inputs and what the workers said."""
    inputs = list(read_log(path))
    async with Replay() as engine:
        await start_workers(engine)
        for event in inputs:
            await engine.feed(event)
        produced = engine.produced
    commands = {
        (e.type, e.data["resource"]["name"]) for e in inputs if e.source == "govbus/manager"
    }
    regenerated = [
        e for e in produced if (e.type, (e.data.get("resource") or {}).get("name")) not in commands
    ]
    merged = sorted(inputs + regenerated, key=lambda e: e.time)
    write_log(tmp_path / "recorded.jsonl", merged)
    return merged


async def test_verify_finds_nothing_in_a_faithful_recording(tmp_path):
    events = await recording_of(LOGS / "expiry.jsonl", tmp_path)
    outcome = await replay_log(read_log(tmp_path / "recorded.jsonl"), verify=True)
    assert outcome.differences == []
    assert outcome.stats.skipped == sum(e.source.startswith("govbus/") for e in events)


async def test_verify_lists_changed_missing_and_extra_events(tmp_path):
    events = await recording_of(LOGS / "expiry.jsonl", tmp_path)
    critical = next(e for e in events if e.data.get("status") == "critical")
    expired = next(e for e in events if e.type == "registry.instance.expired")
    tampered = [
        LogEvent(e.id, e.type, e.source, e.time, {**e.data, "reason": "reported"})
        if e is critical
        else e
        for e in events
        if e is not expired
    ]
    ghost = LogEvent(
        "ghost",
        "registry.instance.deregistered",
        "govbus/discovery",
        at(1),
        {"service": "web", "instance_id": "web-9"},
    )
    write_log(tmp_path / "tampered.jsonl", sorted([*tampered, ghost], key=lambda e: e.time))
    outcome = await replay_log(read_log(tmp_path / "tampered.jsonl"), verify=True)
    found = sorted((d.kind, d.type) for d in outcome.differences)
    assert found == [
        ("changed", "registry.instance.status_changed"),
        ("extra", "registry.instance.expired"),
        ("missing", "registry.instance.deregistered"),
    ]
    changed = next(d for d in outcome.differences if d.kind == "changed")
    assert "data.reason: recorded 'reported', regenerated 'heartbeat_missed'" in changed.detail


async def test_an_invalid_event_is_dead_lettered_with_its_reason_and_replay_goes_on(replay):
    events = list(read_log(LOGS / "drain.jsonl"))
    bad = events[0]._replace(id="bad-port", data={**events[0].data, "port": 70_000})
    await replay.start_workers()
    await replay.run([*events[:3], bad, *events[3:]])
    instances = by_id(await replay.state())
    assert sorted(instances) == ["api-1", "api-2"]
    assert instances["api-1"]["port"] == 9000
    dlq = replay.engine.broker.queues["govbus.discovery.dlq"]
    (dead,) = list(dlq.ready)
    assert dead.message.message_id == "bad-port"
    assert "port" in dead.message.headers["x-govbus-error"]


async def test_expiry_protection_keeps_instances_through_a_mass_silence(replay):
    await replay.start_workers()
    await replay.run(LOGS / "protection.jsonl")
    story = [
        (e.type.removeprefix("registry."), e.data.get("instance_id"), e.time)
        for e in replay.produced
        if e.type != "registry.instance.registered" and e.time > at(1)
    ]
    assert story == [
        ("instance.status_changed", "pay-2", at(3.5)),
        ("instance.status_changed", "pay-3", at(3.5)),
        ("instance.status_changed", "pay-4", at(3.5)),
        ("protection.entered", None, at(3.5)),  # the third miss in one ttl window
        ("instance.status_changed", "pay-5", at(3.5)),
        # Nothing expires at 6.5 (critical for deregister_after_s): protection holds.
        ("instance.status_changed", "pay-2", at(10)),
        ("instance.status_changed", "pay-3", at(10)),
        ("protection.exited", None, at(10)),  # one missing of five: under the rule again
        ("instance.status_changed", "pay-4", at(10)),
        ("instance.expired", "pay-5", at(12)),  # one more ttl to come back, then removed
    ]
    state = await replay.state()
    assert {k: v["status"] for k, v in by_id(state).items()} == {
        "pay-1": "passing",
        "pay-2": "passing",
        "pay-3": "passing",
        "pay-4": "passing",
    }


async def test_workers_can_use_databases_of_your_choice(replay, tmp_path):
    await replay.start_workers(db_url=f"sqlite+aiosqlite:///{tmp_path}/{{worker}}.db")
    await replay.run(LOGS / "drain.jsonl")
    assert len((await replay.state())["instances"]) == 2
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["discovery.db", "manager.db"]


async def test_each_worker_gets_its_own_database(replay, tmp_path):
    await replay.start_workers(db_url=f"sqlite+aiosqlite:///{tmp_path}/replay.db")
    await replay.run(LOGS / "drain.jsonl")
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "replay-discovery.db",
        "replay-manager.db",
    ]
    async with Replay() as engine:
        with pytest.raises(ValueError, match="one database per worker"):
            await start_workers(engine, db_url="postgresql+asyncpg://postgres@127.0.0.1/replay")


def test_replay_knows_the_workers_by_the_sources_they_publish_with():
    from discovery_worker.config import SOURCE as DISCOVERY
    from govbus.replay import WORKER_SOURCES
    from manager_worker import SOURCE as MANAGER

    assert {DISCOVERY, MANAGER} == WORKER_SOURCES
