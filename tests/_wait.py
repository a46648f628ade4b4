"""Waiting on a condition, never on a guess: poll until true or fail with what was seen."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.005, what: Any = ""
) -> Any:
    """Return the first truthy value of `predicate()` (awaited when it is a coroutine); fail
    the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            waited_for = what() if callable(what) else what or predicate
            raise AssertionError(f"timed out after {timeout} s waiting for {waited_for}")
        await asyncio.sleep(interval)
