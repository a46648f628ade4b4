"""Workers starting together on one PostgreSQL database create the tables once, without a
race (two managers in compose, a cluster's workers after an outage)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import inspect

from bus.store import Base, create_engine, create_tables
from tests._stores import pg_database

pytestmark = pytest.mark.postgres


async def test_workers_creating_the_tables_at_once_all_succeed(unique):
    async with pg_database(unique) as url:
        engines = [create_engine(url) for _ in range(6)]
        try:
            await asyncio.gather(*(create_tables(engine) for engine in engines))
            async with engines[0].connect() as conn:
                names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
            assert set(Base.metadata.tables) <= set(names)
        finally:
            for engine in engines:
                await engine.dispose()
