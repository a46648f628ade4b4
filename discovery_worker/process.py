"""Running the discovery worker as a process: `python -m discovery_worker`."""

from __future__ import annotations

import asyncio
import logging

from bus.client import Bus
from bus.process import running
from bus.settings import Settings

from .bootstrap import DiscoveryWorker, bootstrap
from .config import SOURCE

log = logging.getLogger("discovery_worker")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run a discovery worker on `settings` until `stop` is set, then stop it gracefully.

    Raises `BrokerUnreachable` when the broker does not answer and `ConfigError` (naming
    `GOVBUS_DB`) when the store cannot be opened: both `BusError`s, one line each.
    """

    async def build(bus: Bus) -> DiscoveryWorker:
        return await bootstrap(bus=bus, db_url=settings.db)

    async with running(Bus(settings.bus_url(embedded=False), source=SOURCE), build) as worker:
        log.warning("discovery worker running (queue %s)", worker.config.queue)
        await stop.wait()
