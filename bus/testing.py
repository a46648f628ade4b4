"""pytest support: replay an event log into an application's workers or your own handlers,
then assert on what happened.

`LogReplay` is what a test holds: a `bus.replay.Replay` with conveniences for asserting, and
the application's `Participants` to start (`start_workers`). `replay_fixture(...)` makes the
pytest fixture that gives each test a fresh one: an application makes its own with its
participants (govbus's `replay` fixture, with its real workers, is a pytest plugin installed
with govbus).

Everything runs on a private embedded bus (`memory://replay-…`) with a virtual clock, so a
test is deterministic and fast, whatever the wall clock does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from bus.client import Bus
from bus.clock import VirtualClock
from bus.consumer import Handler
from bus.eventlog import LogEvent, read_log
from bus.replay import Participants, Replay, ReplayError, commands_in_time
from bus.topic import topic_matches

__all__ = ["LogReplay", "replay_fixture"]


class LogReplay:
    """What a replay fixture gives a test: a `Replay` with conveniences for asserting."""

    def __init__(self, engine: Replay, participants: Participants | None = None) -> None:
        self.engine = engine
        self.participants = participants
        self._client: Bus | None = None

    @property
    def clock(self) -> VirtualClock:
        return self.engine.clock

    async def start_workers(self, *, seed: int = 0, db_url: str | None = None) -> Participants:
        """Fresh workers of the application (temporary SQLite stores, or `db_url` with a
        `{worker}` placeholder; RNG seeded with `seed`)."""
        if self.participants is None:
            raise ReplayError("this replay has no workers to start: give replay_fixture some")
        await self.engine.attach(self.participants, seed=seed, db_url=db_url)
        return self.participants

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
        for event in self._in_time(events):
            count += 1
            await self.engine.feed(event)
        final = self.engine.last_time
        if until is not None and (final is None or until > final):
            final = until
        if final is not None:
            await self.advance_to(final)
        return count

    def _in_time(self, events: Iterable[LogEvent]) -> Iterator[LogEvent]:
        attached = self.engine.participants
        if attached is None:
            return iter(events)
        return commands_in_time(
            events, is_command=attached.is_command, regenerated=attached.sources
        )

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
        if self._client is None:
            self._client = self.engine.bus("replay-test")
            await self._client.start()
        result = await self._client.call(method, dict(params or {}))
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


def replay_fixture(
    participants: Callable[[], Participants] | None = None, *, name: str = "replay"
) -> Any:
    """A pytest fixture `name` giving each test a fresh `LogReplay` (closed after the test)
    whose `start_workers()` starts `participants()`; their events are never fed (they are
    regenerated), even before the workers start. Needs pytest-asyncio."""

    async def fresh() -> AsyncIterator[LogReplay]:
        cast = participants() if participants is not None else None
        skip = cast.sources if cast is not None else frozenset[str]()
        async with Replay(skip_sources=skip) as engine:
            yield LogReplay(engine, cast)

    try:
        import pytest_asyncio
    except ModuleNotFoundError:  # a plugin loads in every pytest run where it is installed

        def missing() -> None:
            pytest.fail(f"the `{name}` fixture needs pytest-asyncio (pip install pytest-asyncio)")

        return pytest.fixture(missing, name=name)
    return pytest_asyncio.fixture(fresh, name=name)
