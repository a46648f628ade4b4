"""Waiting on a condition, never on a guess: poll until true or fail with what was seen.

`eventually` is for async tests; its predicate may be a plain function or a coroutine function
(an async predicate can read the broker, a database or an HTTP endpoint). `wait_until` is the
same for synchronous code (process tests, the private RabbitMQ node's helpers) that has no event
loop to yield to. These two loops are the only polling loops of the suite
(`tests/unit/test_suite_shape.py` keeps it so).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _timed_out(
    timeout: float, what: str | Callable[[], str], predicate: object, last: object
) -> AssertionError:
    if callable(what):
        what = what()  # a description computed at the time of failure
    seen = repr(last)
    if len(seen) > 300:
        seen = seen[:300] + "..."
    return AssertionError(
        f"timed out after {timeout:g} s waiting for {what or predicate} (last seen: {seen})"
    )


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 5.0,
    interval: float = 0.005,
    what: str | Callable[[], str] = "",
) -> T:
    """Return the first truthy value of `predicate()` (awaited when it is awaitable); fail the
    test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, predicate, value)
        await asyncio.sleep(interval)


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float = 5.0,
    interval: float = 0.05,
    what: str | Callable[[], str] = "",
) -> T:
    """Synchronous `eventually`: block until `predicate()` is truthy; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what, predicate, value)
        time.sleep(interval)
