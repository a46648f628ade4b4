"""The edge's history: a `bus.history.History` of govbus's workers, started with the edge.

On RabbitMQ it follows the `govbus.log` stream (from its first offset, then from the one after
the last it kept); on the embedded bus (`govbus up`) a tap on `govbus.events`. It keeps the log
and its snapshots in the component's store: with SQLite a file of its own beside it
(`govbus.db` -> `govbus-history.db`), so that its writes never wait on the workers'.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bus.client import Bus
from bus.history import History
from bus.topology import LOG
from bus.worker import Worker
from govbus.replay import Workers

__all__ = ["SNAPSHOT_EVERY", "HistoryAlongside", "edge_history", "history_db"]

SNAPSHOT_EVERY = 10_000
"""Events between two snapshots: the most a history query replays past the nearest one."""


def history_db(db_url: str) -> str:
    """Where the history of a component whose store is `db_url` keeps its own."""
    if not db_url.startswith("sqlite"):
        return db_url  # its own tables in the same database
    prefix, _, path = db_url.partition(":///")
    if not path or ":memory:" in path:
        # An in-memory store lives in one connection; the history's is a file of its own.
        path = str(Path(tempfile.mkdtemp(prefix="govbus-history-")) / "history.db")
        return f"{prefix}:///{path}"
    file = Path(path)
    suffix = file.suffix or ".db"
    return f"{prefix}:///{file.with_name(file.stem + '-history' + suffix)}"


class HistoryAlongside:
    """A component with its history: the history starts first (so the component can answer
    from it at once) and stops last."""

    def __init__(self, component: Worker, history: History, bus: Bus) -> None:
        self.component = component
        self.history = history
        self.bus = bus

    @property
    def ready(self) -> bool:
        return self.component.ready

    async def start(self) -> None:
        stream = LOG if self.bus.transport.keeps_log else None
        await self.history.start(self.bus, stream=stream)
        await self.component.start()

    async def stop(self) -> None:
        try:
            await self.component.stop()
        finally:
            await self.history.stop()


def edge_history(db_url: str) -> History:
    return History(history_db(db_url), Workers, snapshot_every=SNAPSHOT_EVERY)
