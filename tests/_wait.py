"""Waiting on a condition, never on a guess: poll until true or fail with what was seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any


async def eventually(
    predicate: Callable[[], Any], *, timeout: float = 5.0, interval: float = 0.005, what: str = ""
) -> Any:
    """Return the first truthy value of `predicate()`; fail the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(interval)
