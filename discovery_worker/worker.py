"""`DiscoveryWorker`: the registry's consumer, RPC server, timers and write-behind, started
and stopped together on a bus it is given."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bus.client import Bus
from bus.clock import Clock
from bus.consumer import EventConsumer, Handler
from bus.errors import BusError
from bus.message import EventMeta
from bus.rpc import RpcServer
from bus.store import Store
from bus.worker import bind_events, bind_methods

from ._time import from_us, to_us
from .balancer import Balancer
from .config import DiscoveryConfig
from .context import Context
from .journal import Journal
from .registry import Registry
from .routing import EVENT_HANDLERS, PATTERNS, RPC_METHODS

log = logging.getLogger(__name__)

SWEEP_SLICE = 500
"""Expiry transitions applied between two turns of the event loop (~10-30 ms of work)."""


class DiscoveryWorker:
    """The registry, its store, its timers, its queue consumer and its RPC server.

    `start()` restores the registry from the store, consumes the worker queue (`config.queue`,
    bound to `PATTERNS`) and serves `RPC_METHODS` on `govbus.rpc.<config.service>`. `stop()`
    is graceful: it stops taking requests and events, finishes what is in flight, writes
    everything behind and publishes what is left. `registry` (state), `balancer` (picks) and
    `journal` (the store side) are public so tests and replay can look inside.
    """

    def __init__(
        self,
        *,
        bus: Bus,
        store: Store,
        owns_store: bool,
        clock: Clock,
        config: DiscoveryConfig,
        rng: random.Random | None,
    ) -> None:
        self.bus = bus
        self.store = store
        self.clock = clock
        self.config = config
        self.registry = Registry(
            threshold=config.protection_threshold,
            min_critical=config.protection_min_critical,
            max_protection_s=config.protection_max_s,
            evidence_ttls=config.protection_evidence_ttls,
        )
        self.balancer = Balancer(self.registry, rng)
        self.journal = Journal(
            store, self.registry, clock=clock, consumer=config.queue, source=config.source
        )
        self.context = Context(registry=self.registry, journal=self.journal, balancer=self.balancer)
        self.consumer: EventConsumer | None = None
        self.server: RpcServer | None = None
        self._owns_store = owns_store
        self._started = False
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._timer_due: int | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._closing = False

    @property
    def ready(self) -> bool:
        """Started, consuming and serving on a connected bus."""
        return (
            self._started
            and self.consumer is not None
            and self.consumer.ready
            and self.server is not None
            and self.server.ready
        )

    async def start(self) -> None:
        """Restore the registry, then consume events, serve queries and run the timers."""
        if not self.bus.transport.is_connected:
            await self.bus.start()
        await self.journal.create_tables()
        await self.journal.load()
        handlers = bind_events(EVENT_HANDLERS, self.context)
        self.consumer = await self.bus.subscribe(
            self.config.queue, PATTERNS, {t: self._guard(h) for t, h in handlers.items()}
        )
        service = self.config.service
        methods = bind_methods(RPC_METHODS, self.context, service=service)
        # Forged requests (not through govbus.rpc) land in this worker's own DLQ.
        self.server = await self.bus.serve(service, methods, dead_letter=self.config.queue)
        self._started, self._closing = True, False
        self.tick()  # what fell due while the worker was away
        self._wake.set()  # and what a crash left in the outbox
        self._flusher = asyncio.get_running_loop().create_task(
            self._flush_loop(), name="discovery:flush"
        )
        log.info(
            "discovery worker on %s: %d instance(s), index %d",
            self.config.queue,
            len(self.registry.instances),
            self.registry.index,
        )

    async def stop(self) -> None:
        """Graceful: finish in-flight messages, write everything behind, publish what is left."""
        self._started = False
        if self.server is not None:
            await self.bus.unsubscribe(self.server)
            self.server = None
        if self.consumer is not None:
            await self.bus.unsubscribe(self.consumer)
            self.consumer = None
        # The timer is only ever cancelled while it sleeps; the flusher is asked to finish,
        # never cancelled: cancelling an aiosqlite call mid-flight can hang its connection.
        if self._timer is not None:
            self._timer.cancel()
            await asyncio.wait([self._timer])
        self._closing = True
        self._wake.set()
        if self._flusher is not None:
            await asyncio.wait([self._flusher])
            if not self._flusher.cancelled() and self._flusher.exception() is not None:
                log.error("discovery worker: the flush loop died: %s", self._flusher.exception())
        self._timer = self._flusher = None
        if self._background:
            await asyncio.wait(self._background)
        try:
            await self.publish()
        except (BusError, SQLAlchemyError, OSError) as exc:
            log.error("discovery worker: the last flush failed: %s", exc)
            log.debug("last flush", exc_info=exc)
        if self._owns_store:
            await self.store.close()

    def tick(self) -> None:
        """Apply the expiry transitions due by now, and re-arm the timer."""
        self.registry.advance(to_us(self.clock.now()))
        self._after_change()

    async def _sweep(self, now: int) -> None:
        """`tick`, in slices: a mass expiry (thousands of instances missing at once) would
        otherwise hold the event loop for as long as it takes (0.3 s for 10,000 of a million),
        and with it every query, ack and heartbeat of the connection. Between slices the
        loop runs; the flusher may write and publish what the slices derived so far."""
        while True:
            self.registry.advance(now, limit=SWEEP_SLICE)
            if not self.registry.due_by(now):
                break
            if self.registry.pending:
                self._wake.set()
            await asyncio.sleep(0)
        self._after_change()

    async def publish(self) -> None:
        """Write what changed (with the derived events), then publish those events.

        One path, under one lock, so an event is never published twice by this worker.
        """
        journal = self.journal
        async with journal.lock:
            await journal.flush_locked()
            if journal.unpublished:
                journal.committed.clear()  # their rows are unsent: the relay takes them too
                await journal.relay_locked(self.bus.transport)
                journal.unpublished = False
            elif journal.committed:
                await journal.publish_committed_locked(self.bus.transport)

    async def settle(self) -> None:
        """Apply what is due, write it and publish its events (tests and replay use this)."""
        self.tick()
        await self.publish()

    def _after_change(self) -> None:
        if self.registry.pending:
            self._wake.set()
        due = self.registry.next_due()
        if not self._started or due is None:
            return
        if self._timer is not None and self._timer_due is not None and self._timer_due <= due:
            return  # already sleeping until then or earlier
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.get_running_loop().create_task(
            self._sleep_then_tick(due), name="discovery:expiry"
        )

    async def _sleep_then_tick(self, due: int) -> None:
        await self.clock.sleep_until(from_us(due))
        # From here on this task is no longer the timer: nothing may cancel its writes.
        self._timer = self._timer_due = None
        task = asyncio.current_task()
        if task is not None:
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        await self._sweep(to_us(self.clock.now()))
        await self._publish_quietly()

    async def _publish_quietly(self) -> None:
        journal = self.journal
        if not (self.registry.pending or journal.committed or journal.unpublished):
            return
        try:
            await self.publish()
        except (BusError, SQLAlchemyError, OSError) as exc:
            # The periodic flush tries again; the events are not lost, only late.
            log.error("discovery worker: publishing derived events failed: %s", exc)
            log.debug("publish", exc_info=exc)

    def _guard(self, handler: Handler) -> Handler:
        async def handle(event: Any, meta: EventMeta) -> None:
            # Whatever fell due before this event happened comes first, as it did in time.
            now = to_us(self.clock.now())
            if self.registry.due_by(now):  # the hot path (a heartbeat) mostly finds nothing
                await self._sweep(now)
            try:
                await handler(event, meta)
            finally:
                self._after_change()
            # The events this one caused go out before it is acknowledged.
            await self._publish_quietly()

        return handle

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.flush_interval_s)
            self._wake.clear()
            if self._closing:
                return  # `stop()` writes the last batch itself
            try:
                await self.publish()
            except (BusError, SQLAlchemyError, OSError) as exc:
                log.error("discovery worker: flush failed, retrying: %s", exc)
                log.debug("flush", exc_info=exc)
                await asyncio.sleep(self.config.flush_interval_s)
