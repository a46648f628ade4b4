"""Where a history keeps its log and its snapshots: two tables in a SQLAlchemy store.

- `govbus_history_events`: every event, by `seq` (the `govbus.log` stream offset on RabbitMQ,
  a counter of our own otherwise), with its time and its log line (`bus.eventlog.dump_line`);
- `govbus_history_snapshots`: the participants' state after the event `seq`, at `time_us`
  (the latest event time fed): their databases (`files`, a zip) and what else they keep
  (`memo`, JSON).

Its own declarative base, so that no worker's `create_tables` makes these tables, and no
history makes a worker's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import BigInteger, LargeBinary, Text, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bus.eventlog import LogEvent, dump_line, parse_line
from bus.store import Store, create_engine, insert_ignore

__all__ = ["HistoryStore", "Snapshot", "from_us", "to_us"]


class _Base(DeclarativeBase):
    pass


class EventRow(_Base):
    __tablename__ = "govbus_history_events"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time_us: Mapped[int] = mapped_column(BigInteger)
    line: Mapped[bytes] = mapped_column(LargeBinary)


class SnapshotRow(_Base):
    __tablename__ = "govbus_history_snapshots"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time_us: Mapped[int] = mapped_column(BigInteger, index=True)
    memo: Mapped[str] = mapped_column(Text)
    files: Mapped[bytes] = mapped_column(LargeBinary)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (no float on the way)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The participants' state once the event `seq` was fed, the clock at `time`."""

    seq: int
    time: datetime
    memo: dict[str, Any]
    files: bytes


class HistoryStore:
    """The log and the snapshots of one history."""

    def __init__(self, url: str) -> None:
        self.store = Store(create_engine(url))

    async def open(self) -> None:
        async with self.store.engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)

    async def close(self) -> None:
        await self.store.close()

    async def append(self, events: Sequence[tuple[int, LogEvent]]) -> None:
        """Add events by `seq`, in one transaction; a `seq` already kept is skipped (a
        stream read again after a reconnection)."""
        rows = [
            {"seq": seq, "time_us": to_us(event.time), "line": dump_line(event)}
            for seq, event in events
        ]
        async with self.store.unit_of_work() as session:
            await insert_ignore(session, EventRow, rows)

    async def last_seq(self) -> int | None:
        async with self.store.sessions() as session:
            value = await session.scalar(select(func.max(EventRow.seq)))
        return None if value is None else int(value)

    async def oldest(self) -> datetime | None:
        """The time of the first event kept (None: none yet)."""
        async with self.store.sessions() as session:
            first = await session.scalar(select(func.min(EventRow.seq)))
            if first is None:
                return None
            time_us = await session.scalar(select(EventRow.time_us).where(EventRow.seq == first))
        return None if time_us is None else from_us(int(time_us))

    async def events_after(self, seq: int, limit: int) -> list[tuple[int, LogEvent]]:
        """Up to `limit` events after `seq`, in order."""
        query = (
            select(EventRow.seq, EventRow.line)
            .where(EventRow.seq > seq)
            .order_by(EventRow.seq)
            .limit(limit)
        )
        async with self.store.sessions() as session:
            rows = (await session.execute(query)).all()
        return [(int(s), parse_line(line)) for s, line in rows]

    async def add_snapshot(self, snapshot: Snapshot) -> None:
        row = {
            "seq": snapshot.seq,
            "time_us": to_us(snapshot.time),
            "memo": orjson.dumps(snapshot.memo).decode(),
            "files": snapshot.files,
        }
        async with self.store.unit_of_work() as session:
            await insert_ignore(session, SnapshotRow, [row])

    async def snapshot(self, *, at_or_before: datetime | None = None) -> Snapshot | None:
        """The latest snapshot, or the latest taken at or before a moment."""
        query = select(SnapshotRow).order_by(SnapshotRow.seq.desc()).limit(1)
        if at_or_before is not None:
            query = query.where(SnapshotRow.time_us <= to_us(at_or_before))
        async with self.store.sessions() as session:
            row = await session.scalar(query)
        if row is None:
            return None
        return Snapshot(row.seq, from_us(row.time_us), orjson.loads(row.memo), row.files)

    async def count_snapshots(self) -> int:
        async with self.store.sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(SnapshotRow)) or 0)
