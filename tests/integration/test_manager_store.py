"""The manager's durability: a crash between commit and publish, and two managers on one
PostgreSQL database."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import select

from bus import Bus
from bus.errors import Conflict
from bus.message import EventMeta
from bus.store import OutboxRelay, OutboxRow, Store, create_engine, create_tables
from manager_worker import SOURCE, ManagerConfig, bootstrap, commands, reactions
from manager_worker.db import ResourceRow
from schemas import (
    CreateResourceRequest,
    DeleteResourceRequest,
    ResourceRequest,
    UpdateResourceRequest,
)
from tests._manager import (
    AMQP_URL,
    T0,
    Harness,
    harness,
    host,
    status_changed,
)
from tests._stores import pg_database
from tests._wait import eventually

ROOT = Path(__file__).resolve().parents[2]


async def unsent(h: Harness) -> list[OutboxRow]:
    async with h.worker.store.unit_of_work() as session:
        return list(await session.scalars(select(OutboxRow).where(OutboxRow.sent == 0)))


@pytest.mark.rabbitmq
async def test_a_change_committed_before_a_crash_is_published_once_by_the_next_relay(
    db_url, unique
):
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.integration._manager_crash_child", db_url, unique],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 20)
        resource_id = line.decode().strip()
        assert resource_id, "the child printed no resource id"
    finally:
        child.send_signal(signal.SIGKILL)
        await asyncio.to_thread(child.wait)
        if child.stdout is not None:
            child.stdout.close()
    assert child.returncode == -signal.SIGKILL

    # Committed, never published: the change and its event are both on disk.
    store = Store(create_engine(db_url))
    try:
        async with store.unit_of_work() as session:
            rows = list(await session.scalars(select(OutboxRow)))
            stored = await session.scalar(select(ResourceRow.id).where(ResourceRow.name == "lan"))
    finally:
        await store.close()
    assert [(r.event_type, r.sent) for r in rows] == [("resource.created", 0)]
    assert stored == resource_id

    async with harness(AMQP_URL, db_url, unique, discovery=False) as h:
        # The fresh worker's relay publishes what the dead one committed.
        await h.settled()
        assert await unsent(h) == []
        row = rows[0]
        assert row.source == SOURCE

        # Anything published after the row comes behind it on the queue: once the next
        # event is in, a duplicate of the first would have been too.
        await h.create(kind="network", name="later", cidr="10.1.0.0/16")
        await h.wait_events(2)
        ids = [m.id for m, _ in h.seen]
        assert ids.count(row.event_id) == 1
        meta, created = h.seen[ids.index(row.event_id)]
        assert (created.resource.id, created.resource.name) == (resource_id, "lan")
        assert meta.source == SOURCE
        # Nothing is left for a relay to send (the background pass may still be marking the
        # second row: wait for it rather than race it with a second flush).
        await eventually(lambda: h.worker.relay.relayed >= 2, what="both rows marked sent")
        assert await unsent(h) == []


@pytest.mark.postgres
async def test_two_managers_on_one_postgres_database_never_corrupt_each_other(memory_url, unique):
    async with pg_database(unique) as db, harness(memory_url, db, unique) as h:
        second_bus = Bus(memory_url, source=SOURCE)
        await second_bus.start()
        # The same queue: the two workers are competing consumers, as two processes would be.
        second = await bootstrap(
            bus=second_bus,
            db_url=db,
            clock=h.clock,
            config=ManagerConfig(queue=f"{unique}.manager", relay_poll_s=0.1),
        )
        await second.start()
        workers = [h.worker, second]
        try:
            h.hosts.append(host("h-1"))
            await h.vm("web-1")

            # Ten updates at the same version, spread over both: exactly one wins.
            results = await asyncio.gather(
                *(
                    commands.update(
                        UpdateResourceRequest.model_validate(
                            {"name": "web-1", "expected_version": 2, "changes": {"vcpus": n}}
                        ),
                        ctx=w.context,
                    )
                    for n, w in zip(range(3, 13), itertools.cycle(workers))
                ),
                return_exceptions=True,
            )
            won = [r for r in results if not isinstance(r, BaseException)]
            lost = [r for r in results if isinstance(r, Conflict)]
            assert (len(won), len(lost)) == (1, 9), results
            current = (
                await commands.get_resource(ResourceRequest(name="web-1"), ctx=second.context)
            ).root
            assert (current.version, current.vcpus) == (3, won[0].root.vcpus)

            # Read-modify-write loops on both, retrying on conflict: no update is lost.
            async def bump(ctx, times: int) -> int:
                conflicts = 0
                for _ in range(times):
                    while True:
                        now = (
                            await commands.get_resource(ResourceRequest(name="web-1"), ctx=ctx)
                        ).root
                        count = int(now.labels.get("count", "0")) + 1
                        try:
                            await commands.update(
                                UpdateResourceRequest.model_validate(
                                    {
                                        "name": "web-1",
                                        "expected_version": now.version,
                                        "changes": {"labels": {"count": str(count)}},
                                    }
                                ),
                                ctx=ctx,
                            )
                            break
                        except Conflict:
                            conflicts += 1
                return conflicts

            await asyncio.gather(*(bump(w.context, 15) for w in workers))
            final = (
                await commands.get_resource(ResourceRequest(name="web-1"), ctx=h.worker.context)
            ).root
            assert (final.labels["count"], final.version) == ("30", 33)

            # The same name created on both at once: one resource, one conflict.
            creates = await asyncio.gather(
                *(
                    commands.create(
                        CreateResourceRequest.model_validate(
                            {"spec": {"kind": "network", "name": "lan", "cidr": "10.0.0.0/8"}}
                        ),
                        ctx=w.context,
                    )
                    for w in workers
                ),
                return_exceptions=True,
            )
            assert sorted(type(c).__name__ for c in creates) == ["Conflict", "ResourceReply"]

            # Attaching a volume to a VM while the other deletes it: never a volume on a
            # deleted VM, whichever comes first.
            outcomes = set()
            for i in range(6):
                await h.vm(f"db-{i}")
                attach, remove = await asyncio.gather(
                    commands.create(
                        CreateResourceRequest.model_validate(
                            {
                                "spec": {
                                    "kind": "volume",
                                    "name": f"disk-{i}",
                                    "size_gb": 1,
                                    "attached_to": f"db-{i}",
                                }
                            }
                        ),
                        ctx=workers[i % 2].context,
                    ),
                    commands.delete(
                        DeleteResourceRequest(name=f"db-{i}"), ctx=workers[(i + 1) % 2].context
                    ),
                    return_exceptions=True,
                )
                outcome = (type(attach).__name__, type(remove).__name__)
                assert outcome in {("ResourceReply", "Conflict"), ("Invalid", "DeleteReply")}
                outcomes.add(outcome)
            async with h.worker.store.unit_of_work() as session:
                names = set(await session.scalars(select(ResourceRow.name)))
                attached = set(
                    await session.scalars(
                        select(ResourceRow.attached_to).where(ResourceRow.attached_to.is_not(None))
                    )
                )
            assert attached <= names, outcomes

            # The same registry event handled by both at once (a redelivery racing the
            # first delivery): the inbox lets exactly one of them act.
            meta = EventMeta(
                id=str(uuid.uuid4()),
                type="registry.instance.status_changed",
                source="govbus/discovery",
                time=T0,
            )
            event = status_changed("h-1", "passing", "critical", "heartbeat_missed")
            await asyncio.gather(
                *(reactions.on_status_changed(event, meta, ctx=w.context) for w in workers)
            )
            after = (
                await commands.get_resource(ResourceRequest(name="web-1"), ctx=h.worker.context)
            ).root
            assert (after.status, after.version) == ("unreachable", 34)

            # The host recovers (handled by one worker) while the other keeps updating web-1:
            # the reaction's single UPDATE never loses the race, so it needs no retry.
            back = EventMeta(
                id=str(uuid.uuid4()),
                type="registry.instance.status_changed",
                source="govbus/discovery",
                time=T0,
            )
            recovered = status_changed("h-1", "critical", "passing", "recovered")
            await asyncio.gather(
                bump(workers[0].context, 10),
                reactions.on_status_changed(recovered, back, ctx=workers[1].context),
            )
            after = (
                await commands.get_resource(ResourceRequest(name="web-1"), ctx=h.worker.context)
            ).root
            assert (after.status, after.labels["count"], after.version) == ("active", "40", 45)

            # A delete without expected_version applies to whatever version is current, even
            # when a host event moves the resource between the delete's read and its write.
            for i in range(6):
                await h.vm(f"tmp-{i}")
                health = ("critical", "passing")[i % 2]
                flip = EventMeta(
                    id=str(uuid.uuid4()),
                    type="registry.instance.status_changed",
                    source="govbus/discovery",
                    time=T0,
                )
                deleted, _ = await asyncio.gather(
                    commands.delete(
                        DeleteResourceRequest(name=f"tmp-{i}"), ctx=workers[i % 2].context
                    ),
                    reactions.on_status_changed(
                        status_changed("h-1", "passing", health, "reported"),
                        flip,
                        ctx=workers[(i + 1) % 2].context,
                    ),
                )
                assert deleted.name == f"tmp-{i}"

            # Each worker runs a relay on the database, and relaying is at-least-once: both may
            # publish a row. De-duplicated by event id (as consumers do), every version of web-1
            # arrives once and in order.
            def versions() -> list[int]:
                first: dict[str, int] = {}
                for m, e in h.seen:
                    if m.type != "resource.drift" and e.resource.name == "web-1":
                        first.setdefault(m.id, e.version)
                return list(first.values())

            last = (
                await commands.get_resource(ResourceRequest(name="web-1"), ctx=h.worker.context)
            ).root.version
            assert last == 45 + 6  # the six host flips above moved web-1 too
            await eventually(
                lambda: versions() == list(range(1, last + 1)),
                timeout=10,
                what=f"web-1 versions 1..{last} in order",
            )
        finally:
            await second.stop()
            await second_bus.close()


async def test_times_survive_sqlite_in_any_local_timezone(memory_url, tmp_path, unique):
    """SQLite stores datetimes without an offset: every time the manager writes (and the relay
    reads back) must be UTC whatever the process's local zone and the cause's offset."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "America/Sao_Paulo"
    time.tzset()
    try:
        db = f"sqlite+aiosqlite:///{tmp_path}/manager.db"
        async with harness(memory_url, db, unique) as h:
            h.hosts.append(host("h-1"))
            await h.vm("web-1")
            at = datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
            cause = str(uuid.uuid4())
            await h.feed(
                status_changed("h-1", "passing", "critical", "heartbeat_missed"),
                event_id=cause,
                at=at,
            )
            assert (await h.resource("web-1"))["updated_at"] == "2026-03-01T12:30:00Z"
            events = await h.wait_events(3, "resource.status_changed", "resource.created")
            assert [m.time for m, _ in events] == [T0, T0, at]
            assert events[-1][1].resource.updated_at == at
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


async def test_the_relay_outlives_an_unreachable_database(memory_url, caplog):
    """asyncpg raises a refused connection as a bare OSError: the relay logs it and keeps
    polling instead of dying (it would then never publish again)."""
    bus = Bus(memory_url, source=SOURCE)
    await bus.start()
    store = Store(create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none"))
    relay = OutboxRelay(store, bus.publisher, source=SOURCE, poll_s=0.01)
    try:
        await relay.start()

        def failed_three_times() -> bool:
            relay.notify()
            return sum("outbox relay:" in r.getMessage() for r in caplog.records) >= 3

        await eventually(failed_three_times, what="three failed relay passes")
        assert relay._task is not None and not relay._task.done()
        with pytest.raises(OSError):
            await relay.stop()  # its last flush still reports the outage to the caller
    finally:
        await store.close()
        await bus.close()


async def test_the_relay_stops_when_woken_just_before_stop(memory_url, tmp_path):
    """A commit notifies the relay and a shutdown follows at once: stop() must return (on
    Python 3.11 `asyncio.wait_for` swallowed that cancel and stop() hung for ever)."""
    bus = Bus(memory_url, source=SOURCE)
    await bus.start()
    store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path}/relay.db"))
    await create_tables(store.engine)
    relay = OutboxRelay(store, bus.publisher, source=SOURCE, poll_s=0.05)
    try:
        for _ in range(20):
            await relay.start()
            # The race under test: the relay task has begun its wait when the notify and the
            # stop come; a short real pause puts it there (a timing reproduction, not a wait).
            await asyncio.sleep(0.002)
            relay.notify()
            await asyncio.wait_for(relay.stop(), 5)
    finally:
        await store.close()
        await bus.close()
