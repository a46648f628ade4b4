"""Where replayed workers keep their stores: one database each, fresh for every replay."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bus.errors import ConfigError


class WorkerStores:
    """Database URLs for a replay's workers, and the temporary directory behind them."""

    def __init__(self) -> None:
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def url(self, worker: str, db_url: str | None) -> str:
        """`db_url` made the worker's own (`per_worker`), or a fresh SQLite file.

        Not `:memory:`: an in-memory database lives in one connection, and a connection that
        SQLAlchemy invalidates (a task cancelled mid-query at shutdown) would take the tables
        with it."""
        if db_url is not None:
            return per_worker(db_url, worker)
        if self._tmp is None:
            shm = Path("/dev/shm")  # memory-backed where there is one: no disk in the loop
            self._tmp = tempfile.TemporaryDirectory(
                prefix="govbus-replay-", dir=shm if shm.is_dir() else None
            )
        return f"sqlite+aiosqlite:///{Path(self._tmp.name) / worker}.db"

    def cleanup(self) -> None:
        """Remove the temporary files (once the stores are closed)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def per_worker(db_url: str, worker: str) -> str:
    """One database per worker: `{worker}` in the URL is replaced by the worker's name; a
    SQLite file without it gets the name added to its stem (`replay.db` becomes
    `replay-discovery.db`)."""
    if "{worker}" in db_url:
        return db_url.replace("{worker}", worker)
    if db_url.startswith("sqlite") and ":memory:" not in db_url:
        path = Path(db_url.split(":///", 1)[1])
        prefix = db_url.split(":///", 1)[0]
        return f"{prefix}:///{path.with_name(f'{path.stem}-{worker}{path.suffix}')}"
    raise ConfigError(
        "a replay's db_url needs one database per worker: put '{worker}' in it, e.g. "
        "postgresql+asyncpg://user@host/replay_{worker}"
    )
