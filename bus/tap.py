"""`Tap`: a private, read-only view of `govbus.events` for observers.

The edge's event streams, `govbus tail`, `govbus record`, an agent waiting for
`registry.heartbeat.unknown` and replay's capture all watch events go by without being a
worker; each takes a tap (usually through `Bus.tap`):

- live (default): an exclusive, auto-deleted, non-durable queue `<prefix>.<random>` bound to
  `govbus.events` by the patterns, bounded if asked (`max_length`, oldest dropped first);
- `stream=`: an existing stream queue (`govbus.log`) read from `offset`; the stream holds every
  event, so the patterns are matched here, and an entry read again after a reconnection (its
  `x-stream-offset` not above the last one seen) is skipped.

Every delivery is acknowledged here, in one place, once the handler has seen it; handlers never
settle. A delivery that did not come through `govbus.events` never reaches the handler: it was
written into the queue (or the stream) by name through the default exchange, which any user
that sends RPC replies may write to, and is dropped and counted in `dropped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence

from bus.errors import BusError
from bus.message import Delivery
from bus.topic import topic_matches
from bus.topology import EVENTS
from bus.transport.base import QueueSpec, Subscription, Transport

log = logging.getLogger(__name__)

TapHandler = Callable[[Delivery], None]
"""Called synchronously for each event, in order; it must not block (schedule slow work)."""


class Tap:
    """A private queue (or a stream) bound to `govbus.events` by topic patterns, consumed."""

    def __init__(
        self,
        transport: Transport,
        patterns: Sequence[str],
        handler: TapHandler,
        *,
        prefix: str = "govbus.tap",
        max_length: int | None = None,
        prefetch: int = 256,
        stream: str | None = None,
        offset: str | int = "first",
    ) -> None:
        if not patterns:
            raise ValueError("a tap needs at least one routing pattern")
        self.transport = transport
        self.patterns = list(patterns)
        self.handler = handler
        self.prefetch = prefetch
        self.stream = stream
        self.offset = offset
        self.name = stream or f"{prefix}.{uuid.uuid4().hex[:16]}"
        arguments = {"x-max-length": max_length, "x-overflow": "drop-head"} if max_length else {}
        self.queue = QueueSpec(
            self.name, durable=False, exclusive=True, auto_delete=True, arguments=arguments
        )
        self.seen = 0
        self.dropped = 0
        self._match_all = stream is None or "#" in self.patterns
        self._last_offset = -1
        self._unacked: list[Delivery] = []
        self._acker: asyncio.Task[None] | None = None
        self._subscription: Subscription | None = None
        self._closed = False
        self._on_close: list[Callable[[], None]] = []

    @property
    def ready(self) -> bool:
        return self._subscription is not None and self.transport.is_connected

    async def start(self) -> None:
        """Declare and bind the private queue (live) and start consuming."""
        if self.stream is not None:
            self._subscription = await self.transport.consume(
                self.stream,
                self._on_delivery,
                prefetch=self.prefetch,
                arguments={"x-stream-offset": self.offset},
            )
            return
        await self.transport.declare_queue(self.queue)
        for pattern in self.patterns:
            await self.transport.bind(self.name, EVENTS, pattern)
        self._subscription = await self.transport.consume(
            self.name, self._on_delivery, prefetch=self.prefetch
        )

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    async def close(self) -> None:
        """Stop consuming, settle what was taken, and delete the private queue. Idempotent."""
        if self._closed:
            return
        self._closed = True
        sub, self._subscription = self._subscription, None
        if sub is not None:
            with contextlib.suppress(BusError):
                await sub.cancel()
        if self._acker is not None:
            await asyncio.wait({self._acker}, timeout=5.0)
        if sub is not None:
            with contextlib.suppress(BusError):
                await sub.close()
        if self.stream is None:
            with contextlib.suppress(BusError):  # also forgets it: not re-declared on reconnect
                await self.transport.delete_queue(self.name)
        for callback in self._on_close:
            callback()

    def _on_delivery(self, delivery: Delivery) -> None:
        if delivery.exchange != EVENTS:
            self.dropped += 1
            # Once at warning: whoever writes into a private queue by name can flood the log.
            level = logging.WARNING if self.dropped == 1 else logging.DEBUG
            way = delivery.exchange or "the default exchange"
            log.log(level, "tap %s dropped a message that came through %s", self.name, way)
        elif self._wanted(delivery):
            self.seen += 1
            try:
                self.handler(delivery)
            except Exception as exc:
                log.error("tap %s: the handler failed: %s", self.name, exc)
                log.debug("tap handler failure", exc_info=exc)
        self._unacked.append(delivery)
        if self._acker is None:
            self._acker = asyncio.get_running_loop().create_task(self._ack())

    def _wanted(self, delivery: Delivery) -> bool:
        if self.stream is None:
            return True  # the queue's bindings already filtered
        offset = delivery.message.headers.get("x-stream-offset")
        if isinstance(offset, int):
            if offset <= self._last_offset:
                return False  # read again from `offset` after a reconnection
            self._last_offset = offset
        return self._match_all or any(topic_matches(p, delivery.routing_key) for p in self.patterns)

    async def _ack(self) -> None:
        """The one place a tap settles: everything taken, in bursts, by one task at a time."""
        try:
            while self._unacked:
                batch, self._unacked = self._unacked, []
                for delivery in batch:
                    try:
                        await delivery.ack()
                    except BusError as exc:  # the channel is gone: the broker forgets them
                        log.debug("tap %s: ack failed: %s", self.name, exc)
        finally:
            self._acker = None
