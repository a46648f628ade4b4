"""A component as a process: started on its own connection, run until SIGTERM or SIGINT, then
stopped gracefully, so the process exits 0.

`run_until_signal(main)` is the one place a govbus process waits for its end (the `govbus`
commands and each worker's `python -m` entry all come through it):
`main(stop)` runs with SIGTERM and SIGINT setting `stop`, and does its graceful shutdown once
`stop` is set. The signals are dispatched by the event loop (`loop.add_signal_handler`), so an
agent running in the same process (`bus.agent`, whose SIGTERM hook is `bus._sigterm`) leaves
SIGTERM to this shutdown instead of taking it over.

`run_process(main)` is the same from synchronous code (a command's entry point), on uvloop
where it is installed: the edge serves HTTP and the workers move messages on the faster loop.

`running(bus, build)` is the lifespan of one worker on one connection: connect, build, start;
on leaving, stop, then disconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import SQLAlchemyError

from bus.client import Bus
from bus.errors import ConfigError
from bus.worker import Worker

__all__ = ["SIGNALS", "loop_factory", "run_process", "run_until_signal", "running"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)
"""What ends a process gracefully: `docker stop`, systemd and Kubernetes send SIGTERM, Ctrl-C
is SIGINT."""


T = TypeVar("T")
R = TypeVar("R", bound=Worker)


async def run_until_signal(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """Run `main(stop)` with SIGTERM and SIGINT setting `stop`; return what it returns.

    `main` starts what the process runs, waits for `stop` (or for its own reason to end) and
    stops it gracefully. The signal handlers are removed when it returns or fails.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        return await main(stop)
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop where it is installed (not on Windows), else None: asyncio's own."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_process(main: Callable[[asyncio.Event], Awaitable[T]]) -> T:
    """`run_until_signal(main)` on a new event loop (`loop_factory`), as `asyncio.run` would
    run it: the process's whole life, from a command's synchronous entry point."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(run_until_signal(main))


@contextlib.asynccontextmanager
async def running(bus: Bus, build: Callable[[Bus], Awaitable[R]]) -> AsyncIterator[R]:
    """Connect `bus`, build a worker on it with `build(bus)` and start it; on leaving, stop the
    worker (gracefully: in-flight work finishes) and close the bus.

    A worker whose store cannot be opened at start (a SQLAlchemy error, or a refused
    connection) is a `ConfigError` naming `GOVBUS_DB`: one line, not a traceback. An
    unreachable broker is `BrokerUnreachable`, from `bus.start()`.
    """
    await bus.start()
    try:
        worker = await build(bus)
        try:
            await worker.start()
        except (SQLAlchemyError, OSError) as exc:
            await worker.stop()
            raise ConfigError(f"GOVBUS_DB: cannot open the store: {exc}") from exc
        try:
            yield worker
        finally:
            await worker.stop()
    finally:
        await bus.close()
