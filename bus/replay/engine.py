"""Replay: feed an event log to handlers on a private embedded bus, driven by a virtual clock.

`Replay` owns a private broker (`memory://replay-<unique>`), a `VirtualClock` and the
participants that run on them: an application's workers (`attach`, which builds them with
`add_worker`), or a user's own handlers (`subscribe`). `feed(event)` does one step:

1. advance the clock to the event's `time`, waking the timers due on the way one at a time and
   letting each one's work finish before the next (`VirtualClock.fire_next`);
2. deliver the event to every queue its type routes to;
3. wait until the bus is *quiescent*.

**Quiescence** (see docs/replay.md) is the crux of determinism: the next step starts only when
nothing started by this one is still running. The bus is quiescent when, all at once,

- no embedded queue holds a message that a consumer could take, and no consumer holds an
  unsettled delivery (consumers settle only after their handler returned, and RPC servers
  after they replied);
- no database connection of a watched engine is checked out (a unit of work or an outbox
  relay pass is in flight, possibly waiting on SQLite's thread);
- no task created since the replay started can run (see `bus.replay._quiet`: nothing was
  woken, scheduled or started that could publish).

Deliveries to the participants' event consumers bypass the broker: `EventConsumer.handle`
validates and handles the event at once (its `process`, the whole ack policy, takes over on
any failure), which keeps a heartbeat-heavy log fast. Events whose source is a participant's
are not fed: the participants regenerate them, and a `Verifier` compares the regenerated with
the recorded ones.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from bus.client import Bus
from bus.clock import VirtualClock
from bus.consumer import EventConsumer, Handler
from bus.errors import BusError
from bus.eventlog import LogEvent
from bus.message import Delivery, Message
from bus.replay._quiet import Activity, Connections, unwatch_tasks, watch_tasks
from bus.replay._stores import WorkerStores
from bus.replay.participants import Participants, Stage, WorkerFactory
from bus.store import Store, create_engine
from bus.tap import Tap
from bus.topology import EVENTS, declare_exchanges
from bus.transport.memory import MemoryBroker, MemoryTransport
from bus.worker import Worker

log = logging.getLogger(__name__)

__all__ = ["Replay", "ReplayError", "ReplayStats"]

W = TypeVar("W", bound=Worker)

_QUIET_CHECKS = 2  # quiet checks in a row (a loop pass apart) that end a step that was busy
_SPINS_BEFORE_BACKOFF = 4  # busy with nothing able to run: a few loop passes, then 1 ms naps
_MAX_WAIT_S = 30.0  # a step that does not settle in this much wall time is a bug: say so


class ReplayError(BusError):
    """The replay could not go on: a step never settled, or a participant failed to start."""


@dataclass(slots=True)
class ReplayStats:
    fed: int = 0
    skipped: int = 0  # published by a participant: regenerated instead
    unrouted: int = 0  # no participant subscribes to the type
    timers: int = 0
    produced: int = 0


class _ReplayDelivery(Delivery):
    """A delivery made by replay itself; settling it only records the outcome."""

    __slots__ = ("settled",)

    def __init__(self, message: Message, routing_key: str) -> None:
        super().__init__(
            message, exchange=EVENTS, routing_key=routing_key, redelivered=False, delivery_count=0
        )
        self.settled = ""

    async def ack(self) -> None:
        self.settled = "ack"

    async def nack(self, *, requeue: bool) -> None:
        self.settled = "requeue" if requeue else "reject"


class _Route(NamedTuple):
    queue: str
    consumer: EventConsumer | None  # None: a queue of no participant's (a user's own)


class Replay:
    """A private embedded bus with a virtual clock, fed one event at a time.

    >>> async with Replay() as replay:
    ...     await replay.subscribe({"registry.register": on_register})
    ...     for event in read_log("session.jsonl"):
    ...         await replay.feed(event)
    ...     produced = replay.produced
    """

    def __init__(
        self,
        *,
        start: datetime | None = None,
        skip_sources: Iterable[str] = (),
        capture: bool = True,
        name: str | None = None,
        settle_timeout_s: float = _MAX_WAIT_S,
    ) -> None:
        self.url = f"memory://{name or 'replay-' + uuid.uuid4().hex}"
        self.clock = VirtualClock(start)
        self.skip_sources = frozenset(skip_sources)
        """Sources whose events are not fed (the participants regenerate them)."""
        self.capture = capture
        self.settle_timeout_s = settle_timeout_s
        self.stats = ReplayStats()
        self.produced: list[LogEvent] = []
        """Events the participants published, in order (when `capture`)."""
        self.on_produced: Callable[[LogEvent], None] | None = None
        self.last_time: datetime | None = None
        self.participants: Participants | None = None
        self._transport = MemoryTransport(self.url)
        self._buses: list[Bus] = []
        self._routes: dict[str, list[_Route]] = {}
        self._tapped: list[Delivery] = []
        self._tap: Tap | None = None
        self._taps: frozenset[str] = frozenset()  # queues that do not count for idleness
        self._tap_ready: Sized = ()  # what waits for dispatch to the tap (see _quiet)
        self._connections = Connections()
        self._activity: Activity | None = None
        self._closers: list[Callable[[], Any]] = []
        self._stores = WorkerStores()
        self._started = False

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the private broker; the tap queue takes every event (like RabbitMQ's log
        stream does live, so nothing a participant publishes is unroutable here either).
        From here on the tasks of this event loop are watched (quiescence)."""
        if self._started:
            return
        self._activity = watch_tasks()
        await self._transport.connect()
        await declare_exchanges(self._transport, log_stream=False)
        self._tap = Tap(
            self._transport, ["#"], self._on_tap, prefix="govbus.replay.tap", prefetch=0
        )
        await self._tap.start()
        self._taps = frozenset({self._tap.name})
        self._tap_ready = self._transport.broker.queues[self._tap.name].ready
        self._started = True

    async def close(self) -> None:
        """Stop the participants (in reverse order), then the broker."""
        for closer in reversed(self._closers):
            try:
                result = closer()
                if asyncio.iscoroutine(result):
                    await result
            except Exception as exc:
                log.error("replay: stopping a participant failed: %s", exc)
                log.debug("stop failure", exc_info=exc)
        self._closers.clear()
        self._stores.cleanup()
        for bus in reversed(self._buses):
            await bus.close()
        self._buses.clear()
        if self._tap is not None:
            await self._tap.close()
            self._tap = None
        await self._transport.close()
        if self._activity is not None:
            unwatch_tasks(self._activity)
            self._activity = None
        self._started = False

    @property
    def broker(self) -> MemoryBroker:
        return self._transport.broker

    def bus(self, source: str, *, rpc_timeout: float = 10.0) -> Bus:
        """A new connection to the private bus on the virtual clock (closed with the replay).

        Call `start()` on it (or let a worker's bootstrap do so)."""
        bus = Bus(
            transport=MemoryTransport(self.url),
            source=source,
            clock=self.clock,
            rpc_timeout=rpc_timeout,
        )
        self._buses.append(bus)
        return bus

    def on_close(self, closer: Callable[[], Any]) -> None:
        """Run `closer` (sync or async) when the replay closes, before the buses close."""
        self._closers.append(closer)

    def watch(self, engine: AsyncEngine) -> None:
        """Count `engine`'s checked-out connections as work in flight (see quiescence)."""
        self._connections.watch(engine)

    # -- participants -------------------------------------------------------------------------

    async def subscribe(
        self,
        handlers: Mapping[str, Handler],
        models: Mapping[str, type[BaseModel]] | None = None,
        *,
        queue: str | None = None,
        source: str = "app",
    ) -> Bus:
        """Run the user's own handlers (event type → `async def handler(event, meta)`).

        Handlers see typed events (`models` defaults to `schemas.EVENT_TYPES`) and publish
        through the returned bus, on the virtual clock.
        """
        if models is None:
            from schemas import EVENT_TYPES

            models = EVENT_TYPES
        await self.start()
        bus = self.bus(source)
        await bus.start()
        await bus.subscribe(queue or f"replay.{source}", sorted(handlers), handlers, models)
        self._routes.clear()
        await self.settle()
        return bus

    async def add_worker(
        self,
        name: str,
        source: str,
        factory: WorkerFactory[W],
        *,
        seed: int = 0,
        db_url: str | None = None,
    ) -> W:
        """A worker built by `factory` on a `Stage` of its own (a connection publishing as
        `source`, a store, the clock, `seed`), started now and stopped when the replay closes.

        Its store is a fresh SQLite file in a temporary directory, or `db_url` with `{worker}`
        replaced by `name` (a SQLite file without it gets `-<name>` added to its stem).
        """
        await self.start()
        store = Store(create_engine(self._stores.url(name, db_url)))
        self.watch(store.engine)
        self.on_close(store.close)
        bus = self.bus(source)
        await bus.start()
        worker = await factory(Stage(bus, store, self.clock, seed))
        await worker.start()
        self.on_close(worker.stop)
        self._routes.clear()
        return worker

    async def attach(
        self, participants: Participants, *, seed: int = 0, db_url: str | None = None
    ) -> None:
        """Start an application's `participants` on this replay (their workers with `seed`
        and `db_url`, see `add_worker`); their sources are skipped from now on, their
        commands re-run (`feed`), their state is `state()`."""
        if self.participants is not None:
            raise ReplayError("the participants of this replay are already running")
        await self.start()
        await participants.start(self, seed=seed, db_url=db_url)
        self.participants = participants
        self.skip_sources |= participants.sources
        self._routes.clear()
        await self.settle()

    async def state(self) -> dict[str, Any]:
        """The participants' final state (see `Participants.state`)."""
        if self.participants is None:
            raise ReplayError("state() needs participants: attach() them first")
        return await self.participants.state()

    # -- feeding ------------------------------------------------------------------------------

    async def feed(self, event: LogEvent) -> bool:
        """One step: clock to `event.time`, deliver, settle. False when the event was skipped
        (a participant published it, so it regenerates it; a command of its own is made again
        at the event's time instead)."""
        if event.source in self.skip_sources:
            self.stats.skipped += 1
            participants = self.participants
            if participants is not None and participants.is_command(event):
                await self.advance_to(event.time)
                self.note_time(event.time)
                await participants.execute(event)
                await self.settle()
            else:
                self.note_time(event.time)
            return False
        moment = event.time
        clock = self.clock
        due = clock.next_due()
        if due is not None and due <= moment:
            await self.advance_to(moment)
        elif moment > clock.now():
            clock.jump_to(moment)
        if self.last_time is None or moment > self.last_time:
            self.last_time = moment
        routes = self._routes.get(event.type)
        if routes is None:
            routes = self._routes[event.type] = self._route(event.type)
        if routes:
            # Each consumer of ours handles the event at once (`EventConsumer.handle`), without
            # the broker, and applies its whole policy (`process`) when that fails; a queue of
            # no participant's (a user's own) gets the event published to it for real.
            body = orjson.dumps(event.data)
            meta = event.meta
            for queue, consumer in routes:
                if consumer is None:
                    self.broker.deliver_to(queue, EVENTS, event.type, event.to_message())
                elif not await consumer.handle(meta, body):
                    await consumer.process(_ReplayDelivery(event.to_message(), event.type))
        else:
            self.stats.unrouted += 1
        self.stats.fed += 1
        await self.settle()
        return True

    def note_time(self, moment: datetime) -> None:
        if self.last_time is None or moment > self.last_time:
            self.last_time = moment

    async def advance_to(self, moment: datetime) -> None:
        """Move the clock to `moment`, firing each timer due on the way, in order, settling
        after each."""
        clock = self.clock
        while clock.fire_next(moment):
            self.stats.timers += 1
            await self.settle()
        if moment > clock.now():
            clock.jump_to(moment)

    def _route(self, event_type: str) -> list[_Route]:
        """Queues the type routes to (the tap aside), each with our consumer of it, if any."""
        consumers = {c.queue: c for bus in self._buses for c in bus.consumers}
        return [
            _Route(queue.spec.name, consumers.get(queue.spec.name))
            for queue in self.broker.route(EVENTS, event_type)
            if queue.spec.name not in self._taps
        ]

    # -- quiescence ---------------------------------------------------------------------------

    def idle(self) -> bool:
        """True when nothing is in flight on the private bus (see the module docstring)."""
        activity = self._activity
        return (
            self._connections.checked_out <= 0
            # Published, not yet dispatched to the capture tap (its acknowledgements are a
            # task's work, which `activity` sees).
            and not self._tap_ready
            and (activity is None or not activity.any_runnable())
            and self._transport.broker.idle(ignore=self._taps)
        )

    def _busy(self) -> str:
        """What keeps the bus from settling, for the error that says so."""
        found = []
        if self._connections.checked_out:
            found.append(f"{self._connections.checked_out} database connection(s) checked out")
        found.extend(self.broker.backlog(ignore=self._taps))
        runnable = self._activity.runnable() if self._activity is not None else []
        if runnable:
            found.append(f"ready callbacks: task(s) able to run: {', '.join(runnable[:3])}")
        return "; ".join(found) or "nothing visible"

    async def settle(self) -> None:
        """Wait for quiescence, then collect what the participants published."""
        if self.idle():
            # The common case: the step finished without leaving anything behind. A plain
            # callback still queued cannot have come from it: its publishes are in the broker,
            # its database work holds a connection, its wake-ups make a task able to run.
            if self._tapped:
                await self._collect()
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settle_timeout_s
        quiet = spins = 0
        while quiet < _QUIET_CHECKS:
            runnable = self._activity is not None and self._activity.any_runnable()
            if not runnable and self._connections.checked_out > 0:
                await self._connections.wait(0.05)
            elif not runnable and spins >= _SPINS_BEFORE_BACKOFF:
                await asyncio.sleep(0.001)  # e.g. a retry's backoff: nothing to do but wait
            else:
                await asyncio.sleep(0)
            spins = 0 if runnable else spins + 1
            quiet = quiet + 1 if self.idle() else 0
            if loop.time() > deadline:
                raise ReplayError(
                    f"the bus did not settle within {self.settle_timeout_s:g} s at "
                    f"{self.clock.now().isoformat()}: a handler or timer never finishes "
                    f"({self._busy()})"
                )
        await self._collect()

    def _on_tap(self, delivery: Delivery) -> None:
        self._tapped.append(delivery)

    async def _collect(self) -> None:
        while self._tapped:
            tapped, self._tapped = self._tapped, []
            for delivery in tapped:
                if not self.capture and self.on_produced is None:
                    continue
                try:
                    event = LogEvent.from_delivery(delivery)
                except ValueError as exc:
                    log.warning("replay: a participant published an undecodable event: %s", exc)
                    continue
                self.stats.produced += 1
                if self.capture:
                    self.produced.append(event)
                if self.on_produced is not None:
                    self.on_produced(event)

    def clear_produced(self) -> list[LogEvent]:
        """Take (and forget) the events produced so far."""
        produced, self.produced = self.produced, []
        return produced
