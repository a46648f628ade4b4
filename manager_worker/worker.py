"""`ManagerWorker`: the manager's consumer, RPC server and outbox relay, started and stopped
together on a bus it is given."""

from __future__ import annotations

import logging

from sqlalchemy.exc import SQLAlchemyError

from bus.client import Bus
from bus.clock import Clock
from bus.consumer import EventConsumer
from bus.errors import BusError
from bus.rpc import RpcServer
from bus.store import OutboxRelay, Store, create_tables
from bus.worker import bind_events, bind_methods
from manager_worker.config import SOURCE, ManagerConfig
from manager_worker.context import Context
from manager_worker.placement import Placement
from manager_worker.routing import EVENT_HANDLERS, PATTERNS, RPC_METHODS

log = logging.getLogger(__name__)


def _no_relay() -> None:
    """Nothing to wake: another process's relay publishes this one's outbox."""


class ManagerWorker:
    """Resource inventory and lifecycle over one bus and one store.

    `start()` creates the tables, starts the outbox relay, consumes the worker queue
    (`config.queue`, bound to `PATTERNS`: the types in `EVENT_HANDLERS`) and serves
    `RPC_METHODS` on `govbus.rpc.<config.service>`. `stop()` is graceful: it stops taking
    requests and events, finishes what is in flight, then flushes the outbox once more.
    """

    def __init__(
        self, *, bus: Bus, store: Store, clock: Clock, config: ManagerConfig, owns_store: bool
    ) -> None:
        self.bus = bus
        self.store = store
        self.clock = clock
        self.config = config
        self._owns_store = owns_store
        self.placement = Placement(
            bus.rpc,
            strategy=config.strategy,
            timeout_s=config.pick_timeout_s,
            method=f"{config.discovery}.pick",
        )
        # Its own rows only (`source`): the store may be shared with another worker (`govbus up`).
        self.relay = OutboxRelay(store, bus.publisher, source=SOURCE, poll_s=config.relay_poll_s)
        self.context = Context(
            store=store,
            clock=clock,
            placement=self.placement,
            notify=self.relay.notify if config.relay else _no_relay,
            consumer=config.queue,
            page_scan=config.page_scan,
        )
        self.consumer: EventConsumer | None = None
        self.server: RpcServer | None = None
        self._relaying = False

    @property
    def ready(self) -> bool:
        """Consuming its queue and serving its methods on a connected bus."""
        return (
            self.consumer is not None
            and self.consumer.ready
            and self.server is not None
            and self.server.ready
        )

    async def start(self) -> None:
        """Create the tables and start the relay, then consume events and serve requests."""
        if not self.bus.transport.is_connected:
            await self.bus.start()
        await create_tables(self.store.engine)
        if self.config.relay:
            await self.relay.start()
            self._relaying = True
        handlers = bind_events(EVENT_HANDLERS, self.context)
        self.consumer = await self.bus.subscribe(self.config.queue, PATTERNS, handlers)
        service = self.config.service
        methods = bind_methods(RPC_METHODS, self.context, service=service)
        # Forged requests (not through govbus.rpc) land in this worker's own DLQ.
        self.server = await self.bus.serve(service, methods, dead_letter=self.config.queue)
        log.info("manager worker ready (queue %s)", self.config.queue)

    async def stop(self) -> None:
        """Graceful: no new work, in-flight work finished, the outbox flushed, store closed."""
        if self.server is not None:
            await self.bus.unsubscribe(self.server)
            self.server = None
        if self.consumer is not None:
            await self.bus.unsubscribe(self.consumer)
            self.consumer = None
        if self._relaying:
            self._relaying = False
            try:
                await self.relay.stop()
            except (BusError, SQLAlchemyError, OSError) as exc:
                # The rows stay unsent; the next relay on this database publishes them.
                log.error("flushing the outbox at shutdown failed: %s", exc)
                log.debug("outbox flush failure", exc_info=exc)
        if self._owns_store:
            await self.store.close()
