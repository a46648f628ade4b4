"""A fresh PostgreSQL database per test: other suites share `test` and run their own outbox
relays on it, which would publish this test's rows."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from tests.conftest import _pg_url


@asynccontextmanager
async def pg_database(prefix: str) -> AsyncIterator[str]:
    """Create database `govbus_<prefix>`, yield its SQLAlchemy URL, drop it afterwards."""
    name = f"govbus_{prefix}"
    pg_url = _pg_url()
    admin_dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()
