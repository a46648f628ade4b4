"""The durable side shared by the workers: engine, unit of work, inbox and outbox.

- The **inbox** records every consumed event id in the same transaction as the handler's
  effects, so a redelivered event has no second effect.
- The **outbox** holds the events a change causes, written in the same transaction as the
  change; `OutboxRelay` publishes them after commit (with confirms) and marks them sent, so a
  crash between commit and publish loses nothing: the next relay pass sends them.
- Every outbox row carries its publisher's `source`, and a relay only ever touches the rows of
  its own source: workers may share one database (`govbus up` puts both in `./govbus.db`), and
  each derived event must be published once, by the worker that derived it.

Works on SQLite (aiosqlite) and PostgreSQL (asyncpg).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    DateTime,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    delete,
    event,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bus.errors import BusError, Unroutable
from bus.message import event_message
from bus.publisher import Publisher
from bus.topology import EVENTS
from bus.transport.base import Transport

log = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Metadata of every govbus table (the workers add theirs)."""


class InboxRow(Base):
    __tablename__ = "govbus_inbox"
    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxRow(Base):
    __tablename__ = "govbus_outbox"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    event_type: Mapped[str] = mapped_column(String(128))
    source: Mapped[str] = mapped_column(String(128))
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    traceparent: Mapped[str | None] = mapped_column(String(64), nullable=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (Index("ix_govbus_outbox_unsent", "sent", "seq"),)


def create_engine(url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL and a busy timeout so readers never block the writer."""
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_async_engine(url, pool_pre_ping=True)


# Any constant: the advisory lock that serialises table creation on one PostgreSQL database.
_CREATE_TABLES_LOCK = 0x676F76627573  # "govbus"


async def create_tables(engine: AsyncEngine, tables: list[Any] | None = None) -> None:
    """Create what is missing. Several workers starting at once on one PostgreSQL database
    (two managers, say) would race on `CREATE TABLE` (a unique violation in pg_type): there
    they take turns, under a transaction-scoped advisory lock."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_TABLES_LOCK}
            )
        await conn.run_sync(Base.metadata.create_all, tables=tables)


class Store:
    """Sessions on one engine, opened as units of work that roll back unless committed."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """A transaction: committed when the block ends normally, rolled back otherwise."""
        async with self.sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()


def _insert(session: AsyncSession, table: type[DeclarativeBase]) -> Any:
    """An INSERT with `ON CONFLICT` in the dialect of `session`'s database (SQLite or
    PostgreSQL: the two share the clause, not the construct).

    Into the Core table, not the mapped class: a list of rows for a mapped class takes the
    ORM's bulk path, which costs far more per row (the registry writes thousands at a time).
    """
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    core = cast(Table, table.__table__)
    return (pg_insert if dialect == "postgresql" else sqlite_insert)(core)


STATEMENT_ROWS = 1000
"""Rows per statement of a batch write: a flush of 10,000 rows goes as ten statements, and the
event loop runs between them (building one statement's parameters holds it ~10 ms)."""


def _chunks(rows: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    for start in range(0, len(rows), STATEMENT_ROWS):
        yield list(rows[start : start + STATEMENT_ROWS])


async def upsert(
    session: AsyncSession, table: type[DeclarativeBase], key: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Insert `rows` into `table`, or update every other column of the row with the same
    `key` (its primary key, or a unique column). All rows have the same columns."""
    if not rows:
        return
    stmt = _insert(session, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={name: stmt.excluded[name] for name in rows[0] if name != key},
    )
    for chunk in _chunks(rows):
        await session.execute(stmt, chunk)


async def insert_ignore(
    session: AsyncSession, table: type[DeclarativeBase], rows: Sequence[Mapping[str, Any]]
) -> int:
    """Insert the `rows` that conflict with no existing row, skip the others; returns how
    many were inserted (exact for one row; some drivers cannot count a batch: then -1)."""
    if not rows:
        return 0
    stmt = _insert(session, table).on_conflict_do_nothing()
    if len(rows) == 1:
        result = await session.execute(stmt.values(**rows[0]))
        return int(getattr(result, "rowcount", -1))
    counts = [
        int(getattr(await session.execute(stmt, chunk), "rowcount", -1)) for chunk in _chunks(rows)
    ]
    return -1 if -1 in counts else sum(counts)


async def mark_processed(session: AsyncSession, consumer: str, event_id: str, at: datetime) -> bool:
    """Record `event_id` as processed by `consumer`; False if it already was (a duplicate)."""
    row = {"consumer": consumer, "event_id": event_id, "processed_at": at}
    return await insert_ignore(session, InboxRow, [row]) != 0


def add_to_outbox(
    session: AsyncSession,
    *,
    event_id: str,
    event_type: str,
    source: str,
    time: datetime,
    body: bytes,
    traceparent: str | None = None,
) -> None:
    """Stage an event to be published once the surrounding transaction commits."""
    session.add(
        OutboxRow(
            event_id=event_id,
            event_type=event_type,
            source=source,
            # UTC, because SQLite keeps no offset: an aware non-UTC time would come back shifted.
            time=time.astimezone(UTC),
            body=body,
            traceparent=traceparent,
            sent=0,
        )
    )


class OutboxRelay:
    """Publishes the committed outbox rows of `source` in order, then marks them sent.

    `notify()` after a commit wakes it at once; it also polls, so rows left by a crashed
    process (committed, never published) go out when the next relay of that source runs.
    Rows of other sources on the same database are theirs to publish, never this relay's.
    Publishing is at-least-once: consumers de-duplicate by event id.
    """

    def __init__(
        self,
        store: Store,
        publisher: Publisher,
        *,
        source: str,
        poll_s: float = 0.5,
        batch: int = 500,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.source = source
        self.poll_s = poll_s
        self.batch = batch
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.relayed = 0

    def notify(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._stopping = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Let the background pass finish (never cancelled: a task cancelled inside an
        aiosqlite or asyncpg call can leave its pooled connection checked out, to be
        garbage-collected mid-transaction), then publish what is left."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self.flush()
            except (BusError, SQLAlchemyError, OSError) as exc:
                # OSError: asyncpg raises a refused or dropped connection unwrapped.
                log.warning("outbox relay: %s; retrying", exc)
            # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancel that arrives as the
            # wait completes (notify() then stop()), and stop() would wait for this task forever.
            with suppress(TimeoutError):
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            self._wake.clear()

    async def flush(self) -> int:
        """Publish every unsent row of this relay's source; returns how many went out."""
        total = await relay_outbox(
            self.store, self.publisher.transport, source=self.source, batch=self.batch
        )
        self.relayed += total
        return total

    async def prune(self, keep: int = 10_000) -> None:
        """Forget this source's sent rows beyond its newest `keep`."""
        await prune_outbox(self.store, source=self.source, keep=keep)


async def relay_outbox(store: Store, transport: Transport, *, source: str, batch: int = 500) -> int:
    """Publish the unsent outbox rows of `source` in order, mark them sent; returns how many.

    `source` is required: workers sharing a database (as in `govbus up`) each relay only their
    own rows, else one would publish the rows the other is about to publish itself. Processes
    of one source on one PostgreSQL database (competing managers) take turns: a relay locks the
    batch it publishes (`FOR UPDATE`) until it has marked it sent, and the next one then finds
    only what is left. (SQLite has no row locks and a read transaction held across the
    publishes would fail the next write: there, one process a source per file.)
    """
    query = (
        select(OutboxRow)
        .where(OutboxRow.sent == 0, OutboxRow.source == source)
        .order_by(OutboxRow.seq)
        .limit(batch)
    )
    locking = store.engine.dialect.name == "postgresql"
    if locking:
        query = query.with_for_update()
    total = 0
    while True:
        async with store.sessions() as session:
            rows = (await session.scalars(query)).all()
            if not locking:
                await session.commit()
            if not rows:
                return total
            sent: list[int] = []
            try:
                await _publish_rows(transport, rows, sent)
            finally:
                # Also after a failed or cancelled publish: what went out is marked, the rest
                # stays for the next pass.
                if sent:
                    await session.execute(
                        update(OutboxRow).where(OutboxRow.seq.in_(sent)).values(sent=1)
                    )
                await session.commit()
                total += len(sent)


async def _publish_rows(transport: Transport, rows: Sequence[OutboxRow], sent: list[int]) -> None:
    for row in rows:
        message = event_message(
            event_type=row.event_type,
            body=row.body,
            event_id=row.event_id,
            source=row.source,
            # SQLite hands back naive datetimes (stored as UTC above).
            time=row.time if row.time.tzinfo else row.time.replace(tzinfo=UTC),
            traceparent=row.traceparent,
        )
        try:
            await transport.publish(EVENTS, row.event_type, message)
        except Unroutable:
            # Nobody subscribes to this type (only on the embedded broker: on RabbitMQ the log
            # stream takes every event). Retrying would block the rows behind it.
            log.debug("outbox: no subscriber for %s %s", row.event_type, row.event_id)
        sent.append(row.seq)


async def prune_outbox(store: Store, *, source: str, keep: int = 10_000) -> None:
    """Forget the sent rows of `source` more than `keep` places (`seq`) behind its newest row:
    its newest rows stay, however many rows other sources wrote since."""
    async with store.unit_of_work() as session:
        newest = await session.scalar(
            select(OutboxRow.seq)
            .where(OutboxRow.source == source)
            .order_by(OutboxRow.seq.desc())
            .limit(1)
        )
        if newest is not None:
            await session.execute(
                delete(OutboxRow).where(
                    OutboxRow.source == source,
                    OutboxRow.sent == 1,
                    OutboxRow.seq <= newest - keep,
                )
            )
