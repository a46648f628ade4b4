"""`bus.store`'s outbox relay on a shared database: each row is published once, by a relay of
its own source."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from bus import Bus
from bus.message import Delivery, Message
from bus.store import (
    OutboxRelay,
    OutboxRow,
    Store,
    add_to_outbox,
    create_engine,
    create_tables,
    relay_outbox,
)
from bus.topology import EVENTS
from bus.transport import QueueSpec
from tests._stores import pg_database
from tests._wait import eventually

T0 = datetime(2026, 1, 1, tzinfo=UTC)


async def _stage(store: Store, source: str, prefix: str, count: int) -> None:
    async with store.unit_of_work() as session:
        for i in range(count):
            add_to_outbox(
                session,
                event_id=f"{prefix}-{i}",
                event_type=f"{prefix}.thing",
                source=source,
                time=T0,
                body=b"{}",
            )


async def _tap(bus: Bus, prefix: str) -> list[Delivery]:
    got: list[Delivery] = []
    await bus.transport.declare_queue(QueueSpec(f"{prefix}.tap", durable=False, exclusive=True))
    await bus.transport.bind(f"{prefix}.tap", EVENTS, f"{prefix}.#")
    await bus.transport.consume(f"{prefix}.tap", got.append, prefetch=0)
    return got


async def _all_before_a_marker(bus: Bus, prefix: str, got: list[Delivery]) -> list[Delivery]:
    """Publish a marker on the tap's pattern and wait for it: one queue delivers in order, so
    every message published before it has arrived by then. Returns those messages."""
    marker = f"{prefix}.marker"
    await bus.transport.publish(EVENTS, marker, Message(body=b"{}", message_id=marker))
    await eventually(lambda: any(d.message.message_id == marker for d in got), what=marker)
    return [d for d in got if d.message.message_id != marker]


async def test_a_relay_publishes_and_prunes_only_its_own_source(memory_url, tmp_path, unique):
    """`govbus up`: the discovery worker and the manager share one SQLite file."""
    store = Store(create_engine(f"sqlite+aiosqlite:///{tmp_path}/shared.db"))
    await create_tables(store.engine)
    try:
        async with Bus(memory_url, source="govbus/manager") as bus:
            got = await _tap(bus, unique)
            await _stage(store, "govbus/manager", f"{unique}.m", 3)
            await _stage(store, "govbus/discovery", f"{unique}.d", 5)
            relay = OutboxRelay(store, bus.publisher, source="govbus/manager")
            assert await relay.flush() == 3
            got = await _all_before_a_marker(bus, unique, got)
            assert [d.message.message_id for d in got] == [f"{unique}.m-{i}" for i in range(3)]
            async with store.unit_of_work() as session:
                await session.execute(update(OutboxRow).values(sent=1))
            # Keeping the newest 2 of the manager's rows: the discovery worker's later rows
            # neither count nor go.
            await relay.prune(keep=2)
        async with store.unit_of_work() as session:
            left = (await session.scalars(select(OutboxRow.event_id))).all()
        assert sorted(left) == sorted(
            [f"{unique}.m-1", f"{unique}.m-2", *(f"{unique}.d-{i}" for i in range(5))]
        )
    finally:
        await store.close()


@pytest.mark.postgres
async def test_two_relays_of_one_source_on_one_database_publish_each_row_once(memory_url, unique):
    """Two manager processes on one PostgreSQL database (compose runs two): each row goes out
    once, not once per relay."""
    async with pg_database(unique) as db:
        stores = [Store(create_engine(db)), Store(create_engine(db))]
        try:
            await create_tables(stores[0].engine)
            await _stage(stores[0], "govbus/manager", unique, 300)
            async with Bus(memory_url, source="x") as bus:
                got = await _tap(bus, unique)
                counts = await asyncio.gather(
                    *(
                        relay_outbox(s, bus.transport, source="govbus/manager", batch=25)
                        for s in stores
                    )
                )
                got = await _all_before_a_marker(bus, unique, got)
            assert sum(counts) == 300
            ids = Counter(d.message.message_id for d in got)
            assert len(ids) == 300 and max(ids.values()) == 1, ids.most_common(3)
            # In order, too: one relay waits for the other's batch instead of overtaking it.
            order = [int((d.message.message_id or "").rsplit("-", 1)[1]) for d in got]
            assert order == sorted(order)
        finally:
            for store in stores:
                await store.close()
