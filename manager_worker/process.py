"""Running the manager as a process: `python -m manager_worker` and `govbus manager`."""

from __future__ import annotations

import asyncio
import logging
import signal

from bus.client import Bus
from bus.settings import Settings
from manager_worker.bootstrap import bootstrap
from manager_worker.config import SOURCE, ManagerConfig

log = logging.getLogger(__name__)


async def serve(settings: Settings, *, config: ManagerConfig | None = None) -> None:
    """Run a manager worker until SIGTERM or SIGINT, then stop gracefully and return.

    Raises `BrokerUnreachable` (a `BusError`) when the broker does not answer at start.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus = Bus(settings.bus_url(embedded=False), source=SOURCE)
    try:
        await bus.start()
        worker = await bootstrap(bus=bus, db_url=settings.db, config=config)
        await worker.start()
        try:
            await stop.wait()
            log.info("manager worker stopping")
        finally:
            await worker.stop()
    finally:
        await bus.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
