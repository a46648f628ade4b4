"""`python -m discovery_worker`: one discovery worker until SIGTERM or SIGINT (then exit 0).

Configuration comes from `GOVBUS_URL` (RabbitMQ by default) and `GOVBUS_DB`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from bus.client import Bus
from bus.errors import BusError
from bus.settings import Settings, load_settings

from .bootstrap import bootstrap
from .config import SOURCE

log = logging.getLogger("discovery_worker")


async def serve(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run a discovery worker on `settings` until `stop` is set or a signal arrives."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Bus(settings.bus_url(embedded=False), source=SOURCE) as bus:
            worker = await bootstrap(bus=bus, db_url=settings.db)
            await worker.start()
            log.warning("discovery worker running (queue %s)", worker.config.queue)
            try:
                await stop.wait()
            finally:
                await worker.stop()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    try:
        asyncio.run(serve(load_settings()))
    except BusError as exc:  # includes ConfigError: a bad GOVBUS_* value
        print(f"discovery_worker: error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
