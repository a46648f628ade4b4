"""`bus.history.History` with govbus's workers: the state at any moment of a kept log, from
snapshots plus a bounded tail, equal to replaying the whole log up to that moment.

Logs: the hand-made ones in tests/logs/; live: events published on the embedded bus and on
RabbitMQ (the `govbus.log` stream of a private vhost).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from uuid import uuid4

import pytest

from bus.client import Bus
from bus.eventlog import read_log
from bus.history import History, TooEarly
from bus.topology import LOG
from govbus.replay import Workers, replay_log
from schemas import Deregister, Heartbeat, Register
from tests._wait import eventually

LOGS = Path(__file__).parent.parent / "logs"


def moments(log: Path) -> list[datetime]:
    """Every event's time, and a moment halfway to the next one, and a minute past the end."""
    times = sorted({event.time for event in read_log(log)})
    between = [a + (b - a) / 2 for a, b in pairwise(times)]
    return sorted({*times, *between, times[-1] + timedelta(minutes=1)})


@pytest.mark.parametrize("name", ["expiry", "protection", "drain", "resources"])
async def test_history_at_any_moment_equals_a_replay_up_to_it(tmp_path, name):
    log = LOGS / f"{name}.jsonl"
    history = History(f"sqlite+aiosqlite:///{tmp_path}/h.db", Workers, snapshot_every=5)
    await history.start()
    try:
        kept = await history.ingest(read_log(log))
        assert await history.store.count_snapshots() == kept // 5
        for moment in moments(log)[::3]:
            expected = (await replay_log(read_log(log), until=moment)).state
            assert await history.at(moment) == expected, moment
    finally:
        await history.stop()


async def test_an_instance_is_critical_before_its_expiry_and_gone_after(tmp_path):
    history = History(f"sqlite+aiosqlite:///{tmp_path}/h.db", Workers, snapshot_every=4)
    await history.start()
    try:
        await history.ingest(read_log(LOGS / "expiry.jsonl"))
        before = await history.at(datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC))
        after = await history.at(datetime(2026, 1, 1, 12, 0, 18, tzinfo=UTC))
    finally:
        await history.stop()
    assert before["at"] == "2026-01-01T12:00:10.000000Z"
    assert {i["instance_id"]: i["status"] for i in before["instances"]}["web-2"] == "critical"
    assert [i["instance_id"] for i in after["instances"]] == ["web-1", "web-3"]


async def test_a_moment_before_the_oldest_names_the_oldest(tmp_path):
    history = History(f"sqlite+aiosqlite:///{tmp_path}/h.db", Workers)
    await history.start()
    try:
        with pytest.raises(TooEarly, match="nothing has been recorded yet"):
            await history.at(datetime(2026, 1, 1, tzinfo=UTC))
        await history.ingest(read_log(LOGS / "expiry.jsonl"))
        with pytest.raises(TooEarly) as caught:
            await history.at(datetime(2026, 1, 1, 11, 59, 59, tzinfo=UTC))
    finally:
        await history.stop()
    assert "the oldest recorded moment is 2026-01-01T12:00:00.000000Z" in str(caught.value)
    assert caught.value.details == {"oldest": "2026-01-01T12:00:00.000000Z"}


async def test_the_log_and_snapshots_outlive_the_process(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    log = LOGS / "protection.jsonl"
    events = list(read_log(log))
    first = History(url, Workers, snapshot_every=10)
    await first.start()
    await first.ingest(events[:60])
    await first.stop()

    second = History(url, Workers, snapshot_every=10)
    await second.start()  # restores its follower from the last snapshot, then the rest
    try:
        await second.ingest(events[60:])
        assert await second.store.count_snapshots() == len(events) // 10
        moment = datetime(2026, 1, 1, 12, 0, 25, tzinfo=UTC)
        expected = (await replay_log(events, until=moment)).state
        assert await second.at(moment) == expected
    finally:
        await second.stop()


def register(instance: str) -> Register:
    return Register(service="hist", instance_id=instance, address="10.0.0.9", port=80, ttl_s=30)


async def test_history_keeps_what_crosses_the_embedded_bus(tmp_path):
    bus = Bus(f"memory://history-{uuid4().hex}", source="agent")
    await bus.start()
    history = History(f"sqlite+aiosqlite:///{tmp_path}/h.db", Workers, snapshot_every=3)
    await history.start(bus)
    try:
        for instance in ("h-1", "h-2", "h-3"):
            await bus.publish(register(instance))
        await bus.publish(Heartbeat(service="hist", instance_id="h-1", status="warning"))
        await eventually(lambda: history.ingested == 4, what="4 events kept")
        registered = datetime.now(UTC)
        await bus.publish(Deregister(service="hist", instance_id="h-2"))
        await eventually(lambda: history.ingested == 5, what="5 events kept")

        then = await history.at(registered)
        now = await history.at(datetime.now(UTC))
    finally:
        await history.stop()
        await bus.close()
    assert {i["instance_id"]: i["status"] for i in then["instances"]} == {
        "h-1": "warning",
        "h-2": "passing",
        "h-3": "passing",
    }
    assert [i["instance_id"] for i in now["instances"]] == ["h-1", "h-3"]


@pytest.mark.rabbitmq
async def test_history_follows_the_rabbitmq_log_stream_from_its_offsets(vhost_url, tmp_path):
    bus = Bus(vhost_url, source="agent")
    await bus.start()  # declares the govbus.log stream
    try:
        await bus.publish(register("r-1"))
        await bus.publish(register("r-2"))
        db = f"sqlite+aiosqlite:///{tmp_path}/h.db"
        history = History(db, Workers, snapshot_every=2)
        await history.start(bus, stream=LOG)  # reads the stream from its first offset
        await eventually(lambda: history.ingested == 2, timeout=10, what="2 kept")
        middle = datetime.now(UTC)
        await history.stop()

        await bus.publish(Deregister(service="hist", instance_id="r-1"))
        again = History(db, Workers, snapshot_every=2)
        await again.start(bus, stream=LOG)  # from the offset after the last one kept
        try:
            await eventually(lambda: again.ingested == 1, timeout=10, what="1 more kept")
            assert await again.store.last_seq() == 2  # stream offsets 0, 1, 2
            then = await again.at(middle)
            now = await again.at(datetime.now(UTC))
        finally:
            await again.stop()
    finally:
        await bus.close()
    assert [i["instance_id"] for i in then["instances"]] == ["r-1", "r-2"]
    assert [i["instance_id"] for i in now["instances"]] == ["r-2"]


async def test_events_handed_over_at_a_stop_are_kept_and_followed_after_it(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path}/h.db"
    events = list(read_log(LOGS / "protection.jsonl"))
    first = History(url, Workers, snapshot_every=10)
    await first.start()
    for event in events:
        first.offer(event)  # as a tap does; the stop comes before the follower took them all
    await first.stop()

    second = History(url, Workers, snapshot_every=10)
    await second.start()
    try:
        assert await second.store.last_seq() == len(events) - 1
        for moment in moments(LOGS / "protection.jsonl")[::7]:
            expected = (await replay_log(events, until=moment)).state
            assert await second.at(moment) == expected, moment
    finally:
        await second.stop()
