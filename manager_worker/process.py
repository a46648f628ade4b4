"""Running the manager worker as a process: `python -m manager_worker`."""

from __future__ import annotations

import asyncio
import logging

from bus.client import Bus
from bus.process import running
from bus.settings import Settings
from manager_worker.bootstrap import bootstrap
from manager_worker.config import SOURCE, ManagerConfig
from manager_worker.worker import ManagerWorker

log = logging.getLogger(__name__)


async def serve(
    settings: Settings, stop: asyncio.Event, *, config: ManagerConfig | None = None
) -> None:
    """Run a manager worker on `settings` until `stop` is set, then stop it gracefully.

    Raises `BrokerUnreachable` when the broker does not answer at start and `ConfigError`
    (naming `GOVBUS_DB`) when the store cannot be opened: both `BusError`s, one line each.
    """

    async def build(bus: Bus) -> ManagerWorker:
        return await bootstrap(bus=bus, db_url=settings.db, config=config)

    async with running(Bus(settings.bus_url(embedded=False), source=SOURCE), build):
        await stop.wait()
        log.info("manager worker stopping")
