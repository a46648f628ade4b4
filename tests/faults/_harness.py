"""What the fault tests share: a ledger of figures, an inbox-backed effect store, load."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import aio_pika
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select

from bus import Bus, BusError
from bus.store import Store, create_engine, create_tables, mark_processed
from schemas import Event

REPORTS: list[dict[str, Any]] = []


class Tick(Event):
    TYPE: ClassVar[str] = "faults.tick"

    seq: int
    poison: bool = False


def tick_model(event_type: str) -> type[Tick]:
    """A `Tick` with a routing key of the test's own."""
    return type("Tick", (Tick,), {"TYPE": event_type, "__module__": __name__})


def event_id(prefix: str, seq: int) -> str:
    return f"{prefix}-{seq:06d}"


@dataclass
class Ledger:
    """The figures RabbitMQ's Jepsen runs report, for one fault test."""

    name: str
    sent: set[str] = field(default_factory=set)
    attempts: int = 0
    confirmed: set[str] = field(default_factory=set)
    deliveries: list[str] = field(default_factory=list)
    delivered_at: list[float] = field(default_factory=list)
    confirmed_at: list[float] = field(default_factory=list)
    effects: int = 0
    effect_ids: set[str] = field(default_factory=set)
    dead_lettered: int = 0
    recover_s: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def delivered(self, event_id: str) -> None:
        self.deliveries.append(event_id)
        self.delivered_at.append(time.monotonic())

    @property
    def received_unique(self) -> set[str]:
        return set(self.deliveries)

    @property
    def lost(self) -> set[str]:
        """Confirmed, yet neither delivered nor applied nor dead-lettered on purpose."""
        return self.confirmed - self.received_unique - self.effect_ids

    async def recovered_after(self, moment: float, timeout: float = 30) -> float:
        """Wait until events are both confirmed and delivered again after `moment`; record
        and return how long that took from `moment`."""
        from tests._wait import eventually

        await eventually(
            lambda: (
                any(t > moment for t in self.delivered_at)
                and any(t > moment for t in self.confirmed_at)
            ),
            timeout=timeout,
            what=f"{self.name}: flow after the fault",
        )
        confirm = next((t for t in self.confirmed_at if t > moment), None)
        deliver = next((t for t in self.delivered_at if t > moment), None)
        if confirm is None or deliver is None:
            raise AssertionError(f"{self.name}: no flow after the fault")
        took = max(confirm, deliver) - moment
        self.recover_s.append(round(took, 3))
        return took

    def figures(self) -> dict[str, Any]:
        return {
            "test": self.name,
            "sent": len(self.sent),
            "publish_attempts": self.attempts,
            "confirmed": len(self.confirmed),
            "received_unique": len(self.received_unique),
            "lost": len(self.lost),
            "duplicated_deliveries": len(self.deliveries) - len(self.received_unique),
            "duplicated_effects": self.effects - len(self.effect_ids),
            "dead_lettered": self.dead_lettered,
            "recover_s": self.recover_s,
            **self.extra,
        }

    def report(self) -> dict[str, Any]:
        figures = self.figures()
        REPORTS.append(figures)
        print(f"\nFAULT {json.dumps(figures)}")
        return figures

    def assert_safe(self) -> None:
        figures = self.report()
        assert figures["lost"] == 0, f"lost events: {sorted(self.lost)[:10]}"
        assert figures["duplicated_effects"] == 0, "an event was applied twice"


_METADATA = MetaData()
EFFECTS = Table(
    "fault_effects",
    _METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(128)),  # not unique on purpose: a second effect would show
    Column("seq", Integer),
)


class Effects:
    """A consumer's side effects on SQLite, de-duplicated by the bus.store inbox."""

    def __init__(self, db_url: str, consumer: str) -> None:
        self.store = Store(create_engine(db_url))
        self.consumer = consumer

    async def setup(self) -> None:
        await create_tables(self.store.engine)
        async with self.store.engine.begin() as conn:
            await conn.run_sync(_METADATA.create_all)

    async def apply(self, event_id: str, seq: int) -> bool:
        """The effect and the inbox mark in one transaction; False for a duplicate."""
        async with self.store.unit_of_work() as session:
            if not await mark_processed(session, self.consumer, event_id, datetime.now(UTC)):
                return False
            await session.execute(insert(EFFECTS).values(event_id=event_id, seq=seq))
        return True

    async def tally(self, ledger: Ledger) -> None:
        # One query for both figures: SQLite runs each SELECT of a session on its own
        # snapshot, so a count and a second read could disagree while the worker still writes.
        async with self.store.unit_of_work() as session:
            applied = list(await session.scalars(select(EFFECTS.c.event_id)))
        ledger.effects = len(applied)
        ledger.effect_ids = set(applied)

    async def close(self) -> None:
        await self.store.close()


class Load:
    """Publishes ticks from `lanes` tasks until stopped; an unconfirmed publish is retried
    with the same event id until the broker confirms it (at-least-once publishing)."""

    def __init__(
        self, bus: Bus, model: type[Tick], ledger: Ledger, *, lanes: int = 8, gap_s: float = 0.005
    ) -> None:
        self.bus = bus
        self.model = model
        self.ledger = ledger
        self.lanes = lanes
        self.gap_s = gap_s
        self.prefix = model.TYPE
        self._seq = itertools.count()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.ensure_future(self._lane()) for _ in range(self.lanes)]

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)

    async def publish(self, seq: int, *, poison: bool = False) -> None:
        eid = event_id(self.prefix, seq)
        self.ledger.sent.add(eid)
        while True:
            self.ledger.attempts += 1
            try:
                await self.bus.publish(self.model(seq=seq, poison=poison), event_id=eid)
            except BusError:
                # Back-off between retries while the broker is away: a publisher's pacing,
                # not a wait for a condition (the loop ends when the broker confirms).
                await asyncio.sleep(0.05)
                continue
            self.ledger.confirmed.add(eid)
            self.ledger.confirmed_at.append(time.monotonic())
            return

    async def _lane(self) -> None:
        while not self._stop.is_set():
            await self.publish(next(self._seq))
            await asyncio.sleep(self.gap_s)  # load pacing: the gap between ticks is the load


async def wait_drained(bus: Bus, queue: str, timeout: float = 5.0) -> None:
    """Wait until `queue` has no ready message left (every delivery was settled)."""
    from tests._wait import eventually

    async def empty() -> bool:
        ready, _ = await bus.transport.queue_state(queue)
        return ready == 0

    await eventually(empty, timeout=timeout, interval=0.05, what=f"{queue} to drain")


async def dead_letters(url: str, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """Take (and ack) every message of `queue`, e.g. a DLQ, to look at its headers."""
    taken = []
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        q = await channel.get_queue(queue, ensure=True)
        while (message := await q.get(no_ack=False, fail=False)) is not None:
            await message.ack()
            taken.append(message)
    finally:
        await connection.close()
    return taken


async def delete_queues(url: str, names: Iterable[str]) -> None:
    async with Bus(url, source="faults-cleanup") as bus:
        for name in names:
            with contextlib.suppress(BusError):
                await bus.transport.delete_queue(name)


ROOT = Path(__file__).resolve().parents[2]


def spawn(url: str, queue: str, event_type: str, db: str, log: Path, *extra: str):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.faults._inbox_worker",
            url,
            queue,
            event_type,
            db,
            str(log),
            *extra,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


async def wait_exit(child: subprocess.Popen[bytes], timeout: float) -> int:
    return await asyncio.wait_for(asyncio.to_thread(child.wait), timeout)


async def ready(child: subprocess.Popen[bytes]) -> None:
    assert child.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
    assert line.strip() == b"ready", line
