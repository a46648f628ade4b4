"""One injected clock: the wall clock live, a virtual clock in replay.

Workers never call `datetime.now()` or `asyncio.sleep()` for their own timers; they ask the
clock, so the same code expires instances on real time and on a log's time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    async def sleep_until(self, moment: datetime) -> None:
        """Return once `now() >= moment`."""
        ...


class WallClock:
    """Real time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep_until(self, moment: datetime) -> None:
        delay = (moment - datetime.now(UTC)).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """Time that moves only when `advance_to` is called.

    Sleepers wake in order of due time (ties in order of arrival), and each gets the event
    loop to itself until it sleeps again, so what a timer does happens before later timers
    fire: replay sees expiries in the order they were due, whatever the wall clock does.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2000, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        return self._now

    async def sleep_until(self, moment: datetime) -> None:
        if moment <= self._now:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (moment, next(self._seq), future))
        await future

    def next_due(self) -> datetime | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def fire_next(self, until: datetime) -> bool:
        """Wake only the earliest sleeper due at or before `until`, moving `now` to its due time.

        False when none is due. Replay calls it in a loop and waits for the woken timer's work
        to finish before the next one, so ties and slow handlers cannot reorder timers.
        """
        due = self.next_due()
        if due is None or due > until:
            return False
        self._now = max(self._now, due)
        _, _, future = heapq.heappop(self._sleepers)
        future.set_result(None)
        return True

    def jump_to(self, moment: datetime) -> None:
        """Move to `moment` at once, when no sleeper is due by then (replay checks
        `next_due()` first, or has fired them with `fire_next`): nothing to wake, no await."""
        due = self.next_due()
        if due is not None and due <= moment:
            raise ValueError(f"a sleeper is due at {due.isoformat()}: advance_to() wakes it")
        self._now = max(self._now, moment)

    async def advance_to(self, moment: datetime, settle: int = 3) -> None:
        """Move to `moment`, waking every sleeper due on the way, in order."""
        while True:
            due = self.next_due()
            if due is None or due > moment:
                break
            self._now = max(self._now, due)
            _, _, future = heapq.heappop(self._sleepers)
            future.set_result(None)
            for _ in range(settle):
                await asyncio.sleep(0)
        self._now = max(self._now, moment)

    async def advance(self, seconds: float) -> None:
        await self.advance_to(self._now + timedelta(seconds=seconds))
