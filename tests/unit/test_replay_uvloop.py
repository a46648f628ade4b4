"""Replay on another event loop (uvloop): it knows a step is over from public facts only
(broker, database connections, the tasks it watches), never from a loop's private queue."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
import uvloop

from bus.eventlog import LogEvent
from bus.message import EventMeta
from bus.replay import Replay, ReplayError
from schemas import Register

T = TypeVar("T")


def on_uvloop(main: Callable[[], Awaitable[T]]) -> T:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert type(runner.get_loop()).__module__.startswith("uvloop")
        return runner.run(main())  # type: ignore[arg-type]


def test_a_step_that_never_settles_is_an_error_on_uvloop_too():
    async def never_settles() -> Any:
        spinners: list[asyncio.Task[None]] = []

        async def spin() -> None:
            while True:
                await asyncio.sleep(0)

        async def on_register(event: Register, meta: EventMeta) -> None:
            spinners.append(asyncio.get_running_loop().create_task(spin()))

        register = LogEvent(
            "reg-a",
            Register.TYPE,
            "web",
            datetime(2026, 1, 1, 12, tzinfo=UTC),
            {"service": "web", "instance_id": "a", "address": "10.0.0.1", "port": 80},
        )
        async with Replay(settle_timeout_s=0.2) as engine:
            await engine.subscribe({Register.TYPE: on_register})
            try:
                with pytest.raises(ReplayError) as caught:
                    await engine.feed(register)
            finally:
                for task in spinners:
                    task.cancel()
        return caught.value

    error = on_uvloop(never_settles)
    assert "did not settle within 0.2 s" in str(error)
    assert "ready callbacks" in str(error) and "spin" in str(error)
