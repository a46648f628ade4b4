"""SIGTERM for the agents: take the instance out of the registry, then do what the program does.

Process managers, `docker stop` and Kubernetes stop a process with SIGTERM, whose default action
ends it on the spot: no `finally`, no `atexit`, and the instance would stay `passing` in the
registry until its TTL ran out. So while an agent runs (`bus.agent.ServiceAgent`, the Flask
adapter), SIGTERM first stops it (drain, deregister), then carries on as the program had set up:

- a handler the program installed with `signal.signal` before the agent started is called
  (one installed after it replaces ours: the program then owns SIGTERM);
- the default action: a WSGI (Flask) process then dies of SIGTERM as it would have; an asyncio
  program takes its Ctrl-C path (`asyncio.run` cancels the main task), so its `finally` and
  `async with` blocks run as they do on Ctrl-C;
- SIGTERM ignored, or dispatched by the event loop (`loop.add_signal_handler`, as aiohttp,
  uvicorn and govbus's own commands do): left alone, the program's shutdown stops the agent.

Python sets signal handlers from the main thread only: an agent started in another thread leaves
SIGTERM alone (the Flask adapter hooks in from the thread that builds the app).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import threading
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

Unhook = Callable[[], None]

Stop = Callable[[], Awaitable[None]]


class _Hooks:
    """The process's one SIGTERM takeover: what runs on it, and what SIGTERM did before."""

    def __init__(self) -> None:
        self.keys = itertools.count()
        self.closers: dict[int, Callable[[], None]] = {}
        self.stoppers: dict[int, tuple[asyncio.AbstractEventLoop, Stop]] = {}
        self.previous: Any = signal.SIG_DFL
        self.tasks: set[asyncio.Task[None]] = set()


_hooks = _Hooks()


def on_sigterm(close: Callable[[], None]) -> Unhook | None:
    """Call `close()` (it may block) on SIGTERM, before the program's own handling.

    Returns the function that removes the hook, or None when SIGTERM is left alone (not the
    main thread, SIGTERM ignored or handled by an event loop).
    """
    if not _take_sigterm():
        return None
    key = next(_hooks.keys)
    _hooks.closers[key] = close
    return lambda: _remove(key)


def on_sigterm_async(stop: Stop) -> Unhook | None:
    """Await `stop()` on the running loop on SIGTERM, then take the program's path (its own
    handler, else its Ctrl-C path). Call it from a coroutine; returns as `on_sigterm`."""
    loop = asyncio.get_running_loop()
    if not _take_sigterm():
        return None
    key = next(_hooks.keys)
    _hooks.stoppers[key] = (loop, stop)
    return lambda: _remove(key)


def _take_sigterm() -> bool:
    if threading.current_thread() is not threading.main_thread():
        return False
    current = signal.getsignal(signal.SIGTERM)
    if current is _handle:
        return True
    if current == signal.SIG_IGN or _loop_dispatched(current):
        return False
    # None: a handler not set from Python; nothing to call, so the default action stands in.
    _hooks.previous = current if current is not None else signal.SIG_DFL
    signal.signal(signal.SIGTERM, _handle)
    return True


def _loop_dispatched(handler: Any) -> bool:
    """asyncio's `add_signal_handler` installs a no-op and dispatches from its self-pipe."""
    return getattr(handler, "__name__", "") == "_sighandler_noop" and str(
        getattr(handler, "__module__", "")
    ).startswith("asyncio")


def _remove(key: int) -> None:
    _hooks.closers.pop(key, None)
    _hooks.stoppers.pop(key, None)
    if (
        not _hooks.closers
        and not _hooks.stoppers
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) is _handle
    ):
        signal.signal(signal.SIGTERM, _hooks.previous)


def _handle(signum: int, frame: FrameType | None) -> None:
    """The SIGTERM handler (main thread, between two bytecodes of whatever it was running)."""
    closers = list(_hooks.closers.values())
    stoppers = [(loop, stop) for loop, stop in _hooks.stoppers.values() if loop.is_running()]
    _hooks.closers.clear()
    _hooks.stoppers.clear()
    for close in closers:
        try:
            close()
        except Exception as exc:
            log.error("stopping an agent on SIGTERM failed: %s", exc)
            log.debug("agent stop failure", exc_info=exc)
    if stoppers:
        loop = stoppers[0][0]  # the main thread runs one loop at a time
        stops = [stop for _, stop in stoppers]
        # The loop may be blocked in select(): call_soon_threadsafe wakes it.
        loop.call_soon_threadsafe(_start, stops, signum, frame)
        return
    _chain(signum, frame, asyncio_program=False)


def _start(stops: list[Stop], signum: int, frame: FrameType | None) -> None:
    task = asyncio.get_running_loop().create_task(
        _stop_then_chain(stops, signum, frame), name="govbus:sigterm"
    )
    _hooks.tasks.add(task)
    task.add_done_callback(_hooks.tasks.discard)


async def _stop_then_chain(stops: list[Stop], signum: int, frame: FrameType | None) -> None:
    results = await asyncio.gather(*(stop() for stop in stops), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.error("stopping an agent on SIGTERM failed: %s", result)
            log.debug("agent stop failure", exc_info=result)
    _chain(signum, frame, asyncio_program=True)


def _chain(signum: int, frame: FrameType | None, *, asyncio_program: bool) -> None:
    """Do what SIGTERM did before the agents took it."""
    if callable(_hooks.previous):
        _hooks.previous(signum, frame)
        return
    if asyncio_program:
        # `asyncio.run`'s SIGINT handler cancels the main task; Python's own raises
        # KeyboardInterrupt. Either way the program unwinds as on Ctrl-C.
        on_ctrl_c = signal.getsignal(signal.SIGINT)
        if callable(on_ctrl_c):
            on_ctrl_c(signal.SIGINT, frame)
            return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.raise_signal(signal.SIGTERM)
