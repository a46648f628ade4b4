"""Running the manager as a process: `python -m manager_worker` and `govbus manager`."""

from __future__ import annotations

import asyncio
import logging
import signal

from sqlalchemy.exc import SQLAlchemyError

from bus.client import Bus
from bus.errors import ConfigError
from bus.settings import Settings
from manager_worker.bootstrap import bootstrap
from manager_worker.config import SOURCE, ManagerConfig

log = logging.getLogger(__name__)


async def serve(settings: Settings, *, config: ManagerConfig | None = None) -> None:
    """Run a manager worker until SIGTERM or SIGINT, then stop gracefully and return.

    Raises `BrokerUnreachable` when the broker does not answer at start and `ConfigError`
    (naming `GOVBUS_DB`) when the store cannot be opened: both `BusError`s, one line each.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bus = Bus(settings.bus_url(embedded=False), source=SOURCE)
    try:
        await bus.start()
        worker = await bootstrap(bus=bus, db_url=settings.db, config=config)
        try:
            await worker.start()
        except (SQLAlchemyError, OSError) as exc:
            await worker.stop()
            raise ConfigError(f"GOVBUS_DB: cannot open the store: {exc}") from exc
        try:
            await stop.wait()
            log.info("manager worker stopping")
        finally:
            await worker.stop()
    finally:
        await bus.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
