"""Checks a command runs before it starts anything, so a bad setting is one line, not a
traceback from deep inside a worker."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url

from bus.errors import ConfigError


def check_store(db: str) -> None:
    """Raise `ConfigError` naming GOVBUS_DB if a SQLite store cannot be written where it is.

    SQLite in WAL mode writes `-wal` and `-shm` files beside the database: the directory must
    be writable too. (PostgreSQL is checked when the worker connects.)
    """
    url = make_url(db)
    if not url.drivername.startswith("sqlite") or url.database in (None, "", ":memory:"):
        return
    shown = url.database or ""
    path = Path(shown)
    directory = path.parent
    if not directory.is_dir():
        raise ConfigError(f"GOVBUS_DB: {directory} (the directory of {shown}) does not exist")
    writable = os.access(directory, os.W_OK | os.X_OK) and (
        not path.exists() or os.access(path, os.R_OK | os.W_OK)
    )
    if not writable:
        raise ConfigError(
            f"GOVBUS_DB: cannot write the SQLite database {shown} (permission denied in "
            f"{directory.absolute()}): run it in a writable directory or set GOVBUS_DB"
        )
