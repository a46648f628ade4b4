"""`bus.store.upsert` and `insert_ignore`: the dialect-aware writes both workers use (registry
write-behind, inboxes, the manager's host health), on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bus.store import Base, InboxRow, Store, create_engine, insert_ignore, mark_processed, upsert

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class OwnBase(DeclarativeBase):
    """Not govbus' `Base`: its tables stay out of every store the other tests create."""


class Counted(OwnBase):
    __tablename__ = "test_store_writes"
    key: Mapped[str] = mapped_column(String(32), primary_key=True)
    label: Mapped[str] = mapped_column(String(32))
    count: Mapped[int] = mapped_column(Integer)


async def _store(db_url: str) -> Store:
    store = Store(create_engine(db_url))
    async with store.engine.begin() as conn:
        await conn.run_sync(OwnBase.metadata.create_all)
        await conn.run_sync(Base.metadata.create_all, tables=[InboxRow.__table__])
    return store


async def test_upsert_inserts_new_rows_and_updates_every_other_column_of_known_ones(db_url):
    store = await _store(db_url)
    try:
        async with store.unit_of_work() as session:
            await upsert(session, Counted, "key", [{"key": "a", "label": "one", "count": 1}])
            await upsert(session, Counted, "key", [])  # nothing to write is no statement
        async with store.unit_of_work() as session:
            await upsert(
                session,
                Counted,
                "key",
                [
                    {"key": "a", "label": "uno", "count": 2},
                    {"key": "b", "label": "two", "count": 3},
                ],
            )
        async with store.unit_of_work() as session:
            rows = (await session.execute(select(Counted.key, Counted.label, Counted.count))).all()
        assert sorted(tuple(r) for r in rows) == [("a", "uno", 2), ("b", "two", 3)]
    finally:
        await store.close()


async def test_insert_ignore_keeps_the_first_row_and_counts_what_it_inserted(db_url):
    store = await _store(db_url)
    try:
        async with store.unit_of_work() as session:
            first = {"key": "a", "label": "first", "count": 1}
            assert await insert_ignore(session, Counted, [first]) == 1
            assert await insert_ignore(session, Counted, [{**first, "label": "again"}]) == 0
            batch = [{"key": "a", "label": "x", "count": 9}, {"key": "c", "label": "c", "count": 3}]
            await insert_ignore(session, Counted, batch)
            assert await insert_ignore(session, Counted, []) == 0
        async with store.unit_of_work() as session:
            rows = (await session.execute(select(Counted.key, Counted.label))).all()
        assert sorted(tuple(r) for r in rows) == [("a", "first"), ("c", "c")]

        async with store.unit_of_work() as session:
            assert await mark_processed(session, "q", "evt-1", T0) is True
            assert await mark_processed(session, "q", "evt-1", T0) is False  # a duplicate
            assert await mark_processed(session, "other", "evt-1", T0) is True
    finally:
        await store.close()
