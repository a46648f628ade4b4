"""pytest support: replay an event log into the real workers or your own handlers, then assert.

govbus installs this module as a pytest plugin (entry point `pytest11: govbus`), so the
`replay` fixture is there in every project that has govbus installed; elsewhere add
`pytest_plugins = ["bus.testing"]` to a `conftest.py`. Tests run under pytest-asyncio.

    async def test_a_silent_instance_expires(replay):
        await replay.start_workers()
        await replay.run("tests/logs/expiry.jsonl")
        state = await replay.state()
        assert [i["instance_id"] for i in state["instances"]] == ["web-1"]
        assert replay.produced_types("registry.instance.expired") == [...]

    async def test_my_handlers(replay):
        seen = []

        async def on_register(event: Register, meta: EventMeta) -> None:
            seen.append((event.instance_id, meta.time))

        await replay.subscribe({"registry.register": on_register})
        await replay.run("tests/logs/registrations.jsonl")
        assert len(seen) == 3

Everything runs on a private embedded bus (`memory://replay-…`) with a virtual clock, so a
test is deterministic and fast, whatever the wall clock does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bus.client import Bus
from bus.clock import VirtualClock
from bus.consumer import Handler
from bus.eventlog import LogEvent, read_log
from bus.replay import Replay, Workers, commands_in_time
from bus.topic import topic_matches

__all__ = ["LogReplay", "replay"]


class LogReplay:
    """What the `replay` fixture gives a test: a `Replay` with conveniences for asserting."""

    def __init__(self, engine: Replay) -> None:
        self.engine = engine

    @property
    def clock(self) -> VirtualClock:
        return self.engine.clock

    async def start_workers(self, *, seed: int = 0, db_url: str | None = None) -> Workers:
        """Fresh discovery and manager workers (temporary SQLite stores, or `db_url` with a
        `{worker}` placeholder; RNG seeded with `seed`)."""
        return await self.engine.start_workers(seed=seed, db_url=db_url)

    async def subscribe(
        self,
        handlers: Mapping[str, Handler],
        models: Mapping[str, type[BaseModel]] | None = None,
        *,
        source: str = "app",
    ) -> Bus:
        """Your own handlers (event type → `async def handler(event, meta)`); the returned bus
        publishes on the replay's bus and clock, so what they publish is in `produced`."""
        return await self.engine.subscribe(handlers, models, source=source)

    async def run(
        self, log: str | Path | Iterable[LogEvent], *, until: datetime | None = None
    ) -> int:
        """Feed a log (a path, or events) in order; then move the clock to its last event (or to
        `until`, if later), firing the timers due on the way. Returns how many events were read."""
        events = read_log(log) if isinstance(log, str | Path) else log
        count = 0
        for event in commands_in_time(events):
            count += 1
            await self.engine.feed(event)
        final = self.engine.last_time
        if until is not None and (final is None or until > final):
            final = until
        if final is not None:
            await self.advance_to(final)
        return count

    async def feed(self, event: LogEvent) -> bool:
        """One event: clock to its time, deliver, settle."""
        return await self.engine.feed(event)

    async def advance_to(self, moment: datetime) -> None:
        """Move the virtual clock, firing and settling every timer due on the way."""
        await self.engine.advance_to(moment)
        await self.engine.settle()
        self.engine.note_time(moment)

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self.clock.now() + timedelta(seconds=seconds))

    async def state(self) -> dict[str, Any]:
        """The workers' state, as `govbus replay` prints it."""
        return await self.engine.state()

    async def call(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """An RPC on the replay's bus (e.g. `discovery.pick`), answered by the workers."""
        workers = self.engine.workers
        if workers is None or workers.client is None:
            raise RuntimeError("call() needs start_workers() first")
        result = await workers.client.call(method, dict(params or {}))
        await self.engine.settle()
        return result

    @property
    def produced(self) -> list[LogEvent]:
        """Every event the participants published so far, in order."""
        return self.engine.produced

    def produced_of(self, pattern: str) -> list[LogEvent]:
        """The produced events whose type matches a topic pattern (`registry.instance.*`)."""
        return [e for e in self.engine.produced if topic_matches(pattern, e.type)]

    def produced_types(self, pattern: str = "#") -> list[str]:
        return [e.type for e in self.produced_of(pattern)]


async def _replay() -> AsyncIterator[LogReplay]:
    """A fresh replay (private embedded bus, virtual clock); closed after the test."""
    async with Replay() as engine:
        yield LogReplay(engine)


try:
    import pytest_asyncio
except ModuleNotFoundError:  # the plugin loads in every pytest run where govbus is installed

    @pytest.fixture(name="replay")
    def _no_replay() -> None:
        """Needs pytest-asyncio."""
        pytest.fail("the `replay` fixture needs pytest-asyncio (pip install pytest-asyncio)")

else:
    replay = pytest_asyncio.fixture(_replay, name="replay")
