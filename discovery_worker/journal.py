"""The registry's durable side: its tables, the write-behind flush, and restore on start.

Heartbeats change memory only. `flush()` writes, in one transaction, every instance changed
since the last flush, the removals, the resource placements, the registry index and
protection state, the inbox marks of the events that wait for it, and the derived events
(to the `bus.store` outbox, published by the `OutboxRelay` after commit). So a derived event
is durable exactly when the state that caused it is: after a crash the restored registry
re-derives what was lost, with the same deterministic ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

from pydantic_core import to_json
from sqlalchemy import (
    BigInteger,
    Boolean,
    Connection,
    Float,
    Integer,
    String,
    Text,
    cast,
    delete,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.types import JSON

from bus.clock import Clock
from bus.errors import Unroutable
from bus.message import event_message
from bus.store import (
    Base,
    InboxRow,
    OutboxRow,
    Store,
    create_tables,
    insert_ignore,
    prune_outbox,
    relay_outbox,
    upsert,
)
from bus.topology import EVENTS
from bus.transport.base import Transport
from schemas import CheckState

from ._entry import Entry
from ._time import from_us
from .registry import Derived, Registry

log = logging.getLogger(__name__)


class InstanceRow(Base):
    __tablename__ = "discovery_instances"
    instance_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    service: Mapped[str] = mapped_column(String(63), index=True)
    address: Mapped[str] = mapped_column(String(253))
    port: Mapped[int] = mapped_column(Integer)
    tags: Mapped[list[str]] = mapped_column(JSON)
    meta: Mapped[dict[str, str]] = mapped_column(JSON)
    weight: Mapped[int] = mapped_column(Integer)
    ttl_s: Mapped[float] = mapped_column(Float)
    deregister_after_s: Mapped[float] = mapped_column(Float)
    registered_at_us: Mapped[int] = mapped_column(BigInteger)
    last_heartbeat_us: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    reported: Mapped[str] = mapped_column(String(16))
    draining: Mapped[bool] = mapped_column(Boolean)
    missed: Mapped[bool] = mapped_column(Boolean)
    missed_at_us: Mapped[int] = mapped_column(BigInteger)
    load: Mapped[float | None] = mapped_column(Float, nullable=True)
    note: Mapped[str] = mapped_column(String(1024))
    reason: Mapped[str | None] = mapped_column(String(256), nullable=True)


class PlacementRow(Base):
    __tablename__ = "discovery_placements"
    resource_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str | None] = mapped_column(String(128), nullable=True)
    version: Mapped[int] = mapped_column(BigInteger)


class ChecksRow(Base):
    """An instance's active checks with their last status: one row per checked instance,
    in a table of its own so heartbeats (the hot path) never rewrite it."""

    __tablename__ = "discovery_checks"
    instance_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    checks: Mapped[list[dict[str, Any]]] = mapped_column(JSON)


class StateRow(Base):
    __tablename__ = "discovery_state"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


INBOX_WINDOW = timedelta(days=7)
INBOX_MEMORY = 200_000
"""Processed event ids kept in memory for de-duplication: those of the last week, at most
this many (a broker only redelivers what was never acknowledged: always recent)."""

TABLES = [
    Base.metadata.tables[name]
    for name in (
        InstanceRow.__tablename__,
        PlacementRow.__tablename__,
        ChecksRow.__tablename__,
        StateRow.__tablename__,
        InboxRow.__tablename__,
        OutboxRow.__tablename__,
    )
]
"""The tables a discovery worker needs (its own, and the shared inbox and outbox)."""


def _row(entry: Entry) -> dict[str, Any]:
    return {
        "instance_id": entry.instance_id,
        "service": entry.service,
        "address": entry.address,
        "port": entry.port,
        "tags": list(entry.tags),
        "meta": entry.meta or {},
        "weight": entry.weight,
        "ttl_s": entry.ttl_s,
        "deregister_after_s": entry.deregister_after_s,
        "registered_at_us": entry.registered_at,
        "last_heartbeat_us": entry.last_heartbeat,
        "status": entry.status,
        "reported": entry.reported,
        "draining": entry.draining,
        "missed": entry.missed,
        "missed_at_us": entry.missed_at,
        "load": entry.load,
        "note": entry.note,
        "reason": entry.reason,
    }


YIELD_EVERY = 256
"""Derived events published between two turns of the event loop (a publish on the embedded
broker never waits, so a long run of them would hold the loop)."""

FREEZE_AT = 50_000
"""From this many restored instances on, they are moved out of the garbage collector's sight
(`gc.freeze`) after a restore: below it, a full collection is cheap."""

_LOAD_BATCH = 10_000
"""Rows read per round trip when the registry is restored (a million instances stream in
batches, never as one list of ORM objects)."""


_COLUMNS = (
    "instance_id", "service", "address", "port", "tags", "meta", "weight", "ttl_s",
    "deregister_after_s", "registered_at_us", "last_heartbeat_us", "status", "reported",
    "draining", "missed", "missed_at_us", "load", "note", "reason",
)  # fmt: skip


def _instance_columns() -> list[Any]:
    """The instance table's columns for a restore, in `_COLUMNS` order; `tags` and `meta` as
    their JSON text (cast in SQL: drivers would decode it), decoded once per distinct value
    by `_Restorer`."""
    table = InstanceRow.__table__
    return [
        cast(table.c[name], Text) if name in ("tags", "meta") else table.c[name]
        for name in _COLUMNS
    ]


class _Restorer:
    """Rows to entries, fast: restoring a million instances repeats a few values a million
    times (service names, tag lists, empty metadata, statuses), so each is decoded and kept
    once; rows are unpacked by position."""

    def __init__(self) -> None:
        self.tags: dict[str, tuple[str, ...]] = {}
        self.strings: dict[str, str] = {}

    def entries(self, rows: Iterable[Any]) -> Iterator[Entry]:
        tags_of, same = self.tags, self.strings.setdefault
        for (
            instance_id, service, address, port, tags, meta, weight, ttl_s, deregister_after_s,
            registered_at, last_heartbeat, status, reported, draining, missed, missed_at, load,
            note, reason,
        ) in rows:  # fmt: skip
            tag_tuple = tags_of.get(tags)
            if tag_tuple is None:
                tag_tuple = tags_of[tags] = tuple(json.loads(tags))
            yield Entry(
                service=same(service, service),
                instance_id=instance_id,
                address=address,
                port=port,
                tags=tag_tuple,
                meta=(json.loads(meta) or None) if meta not in (None, "{}") else None,
                weight=weight,
                ttl_s=ttl_s,
                deregister_after_s=deregister_after_s,
                registered_at=registered_at,
                last_heartbeat=last_heartbeat,
                status=same(status, status),  # type: ignore[arg-type]
                reported=same(reported, reported),  # type: ignore[arg-type]
                draining=bool(draining),
                missed=bool(missed),
                missed_at=missed_at,
                load=load,
                note=note,
                reason=same(reason, reason) if reason is not None else None,
            )


def _add_reason(conn: Connection) -> None:
    """A store written before instances kept their `reason` gets the column (null: unknown)."""
    table = InstanceRow.__tablename__
    if "reason" not in {c["name"] for c in inspect(conn).get_columns(table)}:
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN reason VARCHAR(256)"))


def _checks(entry: Entry) -> list[dict[str, Any]]:
    return [state.model_dump(mode="json") for state in (entry.checks or {}).values()]


class Journal:
    """Writes the registry behind, in batches, and restores it."""

    def __init__(
        self, store: Store, registry: Registry, *, clock: Clock, consumer: str, source: str
    ) -> None:
        self.store = store
        self.registry = registry
        self.clock = clock
        self.consumer = consumer
        self.source = source
        self.marks: set[str] = set()
        self.processed: OrderedDict[str, None] = OrderedDict()
        self.flushes = 0
        self.relayed = 0
        # Events committed but not yet published / published but not yet marked sent.
        self.committed: list[Derived] = []
        self.sent: list[str] = []
        # The outbox may hold unsent rows only the relay can find (left by a crash, or by a
        # failed publish): the next publish pass relays from the table.
        self.unpublished = False
        # Every write of this worker (flushes and the outbox relay) takes it: one writer at a
        # time, which SQLite needs and which keeps the outbox published in order.
        self.lock = asyncio.Lock()

    async def create_tables(self) -> None:
        await create_tables(self.store.engine, TABLES)
        async with self.store.engine.begin() as conn:
            await conn.run_sync(_add_reason)

    async def load(self) -> None:
        """Fill the (empty) registry from the store."""
        entries: list[Entry] = []
        restorer = _Restorer()
        # Creating a million long-lived objects would run the cyclic garbage collector over
        # all of them again and again (seconds of a million-instance load): it waits.
        collecting = gc.isenabled()
        gc.disable()
        try:
            async with self.store.engine.connect() as conn:
                # Plain rows (no ORM objects), streamed in batches: a million instances load
                # in seconds, and what is kept in memory is only the `Entry` of each.
                result = await conn.stream(
                    select(*_instance_columns()).execution_options(yield_per=_LOAD_BATCH)
                )
                async for batch in result.partitions(_LOAD_BATCH):
                    entries.extend(restorer.entries(batch))
        finally:
            if collecting:
                gc.enable()
        async with self.store.unit_of_work() as session:
            placements = (await session.scalars(select(PlacementRow))).all()
            checks = {r.instance_id: r.checks for r in await session.scalars(select(ChecksRow))}
            state = {r.key: r.value for r in (await session.scalars(select(StateRow))).all()}
        for entry in entries if checks else ():
            if entry.instance_id in checks:
                states = [CheckState.model_validate(c) for c in checks[entry.instance_id]]
                entry.checks = {str(c.check.id): c for c in states} or None
        self.registry.load(
            entries,
            index=state.get("index", 0),
            protection=bool(state.get("protection", 0)),
            protection_exited_us=state.get("protection_exited_us", 0),
            protection_since_us=state.get("protection_since_us", 0),
            protection_ttl_us=state.get("protection_ttl_us", 0),
            placements={p.resource_id: (p.host, p.version) for p in placements},
        )
        async with self.store.unit_of_work() as session:
            recent = (
                await session.scalars(
                    select(InboxRow.event_id)
                    .where(
                        InboxRow.consumer == self.consumer,
                        InboxRow.processed_at >= self.clock.now() - INBOX_WINDOW,
                    )
                    .order_by(InboxRow.processed_at.desc())
                    .limit(INBOX_MEMORY)
                )
            ).all()
        self.processed = OrderedDict.fromkeys(reversed(recent))
        self.unpublished = True  # a crash may have left committed events unpublished
        if len(entries) >= FREEZE_AT:
            # A full collection walks every live object: with a million entries, a stall of
            # hundreds of ms on the consumer's loop. The restored registry (no reference
            # cycles: refcounting still frees what is removed) moves out of its sight.
            gc.freeze()
        log.info("restored %d instance(s) at index %d", len(entries), self.registry.index)

    def seen(self, event_id: str) -> bool:
        """Whether an event was already processed (its effect is in memory, flushed or about
        to be). Answered from memory: the recent inbox is loaded at start, and redeliveries
        are always recent (a broker only redelivers what was never acknowledged)."""
        return event_id in self.processed

    def mark(self, event_id: str) -> None:
        """Record `event_id` as processed (in the inbox by the next flush)."""
        self.marks.add(event_id)
        self.processed[event_id] = None
        if len(self.processed) > INBOX_MEMORY:
            self.processed.popitem(last=False)

    async def flush(self) -> int:
        """Write what changed since the last flush in one transaction; returns rows written.

        On failure nothing is forgotten: the same changes are written by the next flush.
        """
        async with self.lock:
            return await self.flush_locked()

    async def flush_locked(self) -> int:
        """`flush()` for a caller that holds `lock`."""
        reg = self.registry
        if not (
            reg.dirty or reg.removed or reg.dirty_placements or reg.pending or self.marks
        ) and not (self.sent or reg.dirty_checks):
            return 0
        # Take everything synchronously (handlers keep changing memory while we await).
        dirty, reg.dirty = reg.dirty, set()
        removed, reg.removed = reg.removed, set()
        moved, reg.dirty_placements = reg.dirty_placements, set()
        checked, reg.dirty_checks = reg.dirty_checks, set()
        check_rows = [
            {"instance_id": i, "checks": _checks(reg.instances[i])}
            for i in sorted(checked)
            if i in reg.instances and reg.instances[i].checks
        ]
        unchecked = sorted(checked - {r["instance_id"] for r in check_rows})
        pending, reg.pending = reg.pending, []
        marks, self.marks = self.marks, set()
        sent, self.sent = self.sent, []
        rows = [_row(reg.instances[i]) for i in sorted(dirty) if i in reg.instances]
        placements = [
            {"resource_id": r, "host": reg.placements[r][0], "version": reg.placements[r][1]}
            for r in sorted(moved)
            if r in reg.placements
        ]
        state = [
            {"key": "index", "value": reg.index},
            {"key": "protection", "value": int(reg.protection)},
            {"key": "protection_exited_us", "value": reg.protection_exited_us},
            {"key": "protection_since_us", "value": reg.protection_since_us},
            {"key": "protection_ttl_us", "value": reg.protection_ttl_us},
        ]
        now = self.clock.now()
        try:
            async with self.store.unit_of_work() as session:
                await upsert(session, InstanceRow, "instance_id", rows)
                if removed:
                    await session.execute(
                        delete(InstanceRow).where(InstanceRow.instance_id.in_(sorted(removed)))
                    )
                await upsert(session, PlacementRow, "resource_id", placements)
                await upsert(session, ChecksRow, "instance_id", check_rows)
                if unchecked:
                    await session.execute(
                        delete(ChecksRow).where(ChecksRow.instance_id.in_(unchecked))
                    )
                await upsert(session, StateRow, "key", state)
                await insert_ignore(
                    session,
                    InboxRow,
                    [
                        {"consumer": self.consumer, "event_id": m, "processed_at": now}
                        for m in sorted(marks)
                    ],
                )
                await insert_ignore(session, OutboxRow, [self._outbox_row(d) for d in pending])
                if sent:
                    await session.execute(
                        update(OutboxRow).where(OutboxRow.event_id.in_(sent)).values(sent=1)
                    )
        except BaseException:
            reg.dirty |= dirty - reg.removed
            reg.removed |= removed - reg.dirty
            reg.dirty_placements |= moved
            reg.dirty_checks |= checked
            reg.pending[:0] = pending
            self.marks |= marks
            self.sent[:0] = sent
            raise
        self.flushes += 1
        self.committed.extend(pending)
        return len(rows) + len(removed) + len(placements) + len(pending)

    async def publish_committed_locked(self, transport: Transport) -> int:
        """Publish the events the last flushes committed, straight from memory.

        They are marked sent by the next flush (a crash before that republishes them:
        at-least-once). If publishing fails, the outbox relay (`relay_locked`) takes over.
        """
        committed, self.committed = self.committed, []
        try:
            for number, derived in enumerate(committed, 1):
                if number % YIELD_EVERY == 0:
                    await asyncio.sleep(0)  # a sweep's thousands: let the loop breathe
                message = event_message(
                    event_type=derived.event.TYPE,
                    body=to_json(derived.event),
                    event_id=derived.event_id,
                    source=self.source,
                    time=from_us(derived.time_us),
                )
                with contextlib.suppress(Unroutable):  # nobody listens (embedded broker only)
                    await transport.publish(EVENTS, derived.event.TYPE, message)
                self.sent.append(derived.event_id)
        except BaseException:
            self.unpublished = True  # the unsent rows are in the outbox: the relay finds them
            raise
        await self._count_relayed(len(committed))
        return len(committed)

    async def relay_locked(self, transport: Transport) -> int:
        """Publish this worker's committed derived events (the caller holds `lock`)."""
        total = await relay_outbox(self.store, transport, source=self.source)
        await self._count_relayed(total)
        return total

    async def _count_relayed(self, count: int) -> None:
        before, self.relayed = self.relayed, self.relayed + count
        if before // 1000 != self.relayed // 1000:  # now and then, forget old sent rows
            await prune_outbox(self.store, source=self.source)

    def _outbox_row(self, derived: Derived) -> dict[str, Any]:
        return {
            "event_id": derived.event_id,
            "event_type": derived.event.TYPE,
            "source": self.source,
            "time": from_us(derived.time_us),
            "body": to_json(derived.event),
            "traceparent": None,
            "sent": 0,
        }
