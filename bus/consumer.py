"""Consuming events: the one place where acknowledgement is decided.

The policy, for every delivery:

0. Accept only what reached the queue through `govbus.events`. Anything written into it
   another way (the default exchange, which every user that sends RPC replies may write to,
   or `govbus.dlx`) is dead-lettered at once with the reason and never handled: a broker
   user can then make a worker act only on the event types its topic permissions let it
   publish.
1. Read the CloudEvents attributes and validate the body into the event's model. A message
   that cannot be decoded is dead-lettered at once (retrying cannot fix it).
2. Call the handler for its type. `Reject` dead-letters at once; `Retry` and unexpected
   exceptions are retried with exponential backoff, then dead-lettered. The first attempt is
   a plain call: the retry machinery costs nothing until a handler fails.
3. Ack only after the handler returned, i.e. after its transaction committed.

Dead-lettering publishes a copy to `govbus.dlx` (routing key = the queue name, so it lands in
`<queue>.dlq`) with headers `x-govbus-error` and `x-govbus-attempts`, waits for the confirm and
then acks the original; if that publish fails the message is requeued instead, so nothing is
lost. Handlers never ack; deliveries are processed in order (`concurrency=1`) unless told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pydantic import BaseModel, ValidationError

from bus.errors import BusError, DecodeError, Reject
from bus.message import Delivery, EventMeta, event_meta
from bus.topology import DLX, EVENTS
from bus.transport.base import Subscription, Transport
from bus.validation import describe_validation

log = logging.getLogger(__name__)

Handler = Callable[[Any, EventMeta], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ConsumerPolicy:
    """How a consumer takes work: prefetch, parallelism, retries."""

    prefetch: int = 256
    concurrency: int = 1
    max_attempts: int = 3
    backoff_initial_s: float = 0.05
    backoff_max_s: float = 2.0
    shutdown_timeout_s: float = 10.0


def refusal(queue: str, exchange: str, accepted: str) -> str | None:
    """None when a delivery to `queue` came through `accepted`, else the reason to refuse it.

    One string compare on the hot path; the reason is built only for a refusal.
    """
    if exchange == accepted:
        return None
    way = "the default exchange" if exchange == "" else exchange
    return f"refused: reached {queue} through {way}; only {accepted} is accepted"


async def dead_letter(
    transport: Transport, delivery: Delivery, queue: str, *, key: str, reason: str, attempts: int
) -> None:
    """Publish a copy of `delivery` to `govbus.dlx` with key `key` (so it lands in
    `<key>.dlq`) and headers saying why; raises `BusError` if the broker did not confirm it."""
    message = delivery.message
    headers = {
        **message.headers,
        "x-govbus-error": reason[:1000],
        "x-govbus-attempts": attempts,
        "x-govbus-queue": queue,
        "x-govbus-routing-key": delivery.routing_key,
        "x-govbus-exchange": delivery.exchange,
    }
    # Without its expiration (as RabbitMQ's own dead-lettering does): the copy is evidence.
    await transport.publish(DLX, key, replace(message, headers=headers, expiration_ms=None))


@dataclass(slots=True)
class ConsumerStats:
    delivered: int = 0
    handled: int = 0
    ignored: int = 0
    retried: int = 0
    dead_lettered: int = 0
    refused: int = 0  # not from govbus.events: dead-lettered, never handled


class EventConsumer:
    """Consumes a queue and dispatches each event to the handler for its type."""

    def __init__(
        self,
        transport: Transport,
        queue: str,
        handlers: Mapping[str, Handler],
        models: Mapping[str, type[BaseModel]],
        *,
        policy: ConsumerPolicy | None = None,
    ) -> None:
        self.transport = transport
        self.queue = queue
        self.handlers = dict(handlers)
        self.models = models
        self.policy = policy or ConsumerPolicy()
        self.stats = ConsumerStats()
        self._inbox: asyncio.Queue[Delivery] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None

    @property
    def ready(self) -> bool:
        """True once the consumer is registered with a connected broker."""
        return self._subscription is not None and self.transport.is_connected

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._workers = [
            loop.create_task(self._work(), name=f"consumer:{self.queue}:{i}")
            for i in range(self.policy.concurrency)
        ]
        self._subscription = await self.transport.consume(
            self.queue, self._inbox.put_nowait, prefetch=self.policy.prefetch
        )

    async def stop(self) -> None:
        """Graceful: stop taking work, finish what is in flight, give the rest back."""
        sub, self._subscription = self._subscription, None
        if sub is not None:
            await sub.cancel()
        # Without workers (never started, or stopped already) nothing would drain the inbox.
        if self._workers:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.policy.shutdown_timeout_s):
                    await self._inbox.join()  # every delivery taken is processed and settled
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers = []
        if sub is not None:
            await sub.close()  # whatever is still unsettled goes back to the queue

    async def _work(self) -> None:
        while True:
            delivery = await self._inbox.get()
            try:
                await self.process(delivery)
            except BusError as exc:
                # The connection dropped while settling: the broker redelivers the message.
                log.warning("settling a message from %s failed: %s", self.queue, exc)
            finally:
                self._inbox.task_done()

    async def handle(self, meta: EventMeta, body: bytes) -> bool:
        """One attempt at an event whose attributes the caller has read already (replay feeds
        them from a log, and knows it routed the event through `govbus.events`): validate
        `body`, call the handler once. True when it was handled (and counted); False when the
        policy must decide instead (no handler, an invalid body, a failing handler): then
        give `process` the event as a delivery, which runs the whole policy (a failed first
        attempt here counts as a transient failure on top of the policy's attempts)."""
        handler = self.handlers.get(meta.type)
        model = self.models.get(meta.type)
        if handler is None or model is None:
            return False
        try:
            # The model's own validator: what `model_validate_json` calls, one call less.
            event = model.__pydantic_validator__.validate_json(body)
        except ValidationError:
            return False
        try:
            await handler(event, meta)
        except Exception as exc:
            log.debug("%s %s failed once: %s", meta.type, meta.id, exc)
            return False
        self.stats.delivered += 1
        self.stats.handled += 1
        return True

    async def process(self, delivery: Delivery) -> None:
        """Apply the policy to one delivery (public so replay can drive it directly)."""
        self.stats.delivered += 1
        refused = refusal(self.queue, delivery.exchange, EVENTS)
        if refused is not None:
            self.stats.refused += 1
            await self._dead_letter(delivery, refused, 0)
            return
        try:
            meta = event_meta(delivery)
        except ValueError as exc:
            await self._dead_letter(delivery, f"undecodable: {exc}", 0)
            return
        handler = self.handlers.get(meta.type)
        if handler is None:
            self.stats.ignored += 1
            await delivery.ack()
            return
        model = self.models.get(meta.type)
        if model is None:
            await self._dead_letter(delivery, f"undecodable: unknown event type {meta.type!r}", 0)
            return
        try:
            event = model.model_validate_json(delivery.message.body)
        except ValidationError as exc:
            await self._dead_letter(delivery, f"invalid {meta.type}: {describe_validation(exc)}", 0)
            return
        attempts = 0
        try:
            while True:
                attempts += 1
                try:
                    await handler(event, meta)
                    break
                except (Reject, DecodeError):
                    raise  # retrying cannot help
                except Exception:
                    if attempts >= self.policy.max_attempts:
                        raise
                self.stats.retried += 1
                await asyncio.sleep(self._backoff(attempts))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("%s %s failed after %d attempt(s): %s", meta.type, meta.id, attempts, exc)
            log.debug("handler failure", exc_info=exc)
            await self._dead_letter(delivery, f"{type(exc).__name__}: {exc}", attempts)
            return
        self.stats.handled += 1
        await delivery.ack()

    def _backoff(self, failed_attempts: int) -> float:
        """Exponential: `backoff_initial_s` after the first failure, doubling up to the max."""
        delay = self.policy.backoff_initial_s * 2 ** (failed_attempts - 1)
        return float(min(delay, self.policy.backoff_max_s))

    async def _dead_letter(self, delivery: Delivery, reason: str, attempts: int) -> None:
        try:
            await dead_letter(
                self.transport,
                delivery,
                self.queue,
                key=self.queue,
                reason=reason,
                attempts=attempts,
            )
        except BusError as exc:
            log.error("dead-lettering a message from %s failed (%s): requeued", self.queue, exc)
            await delivery.nack(requeue=True)
            return
        self.stats.dead_lettered += 1
        log.warning("dead-lettered a message from %s: %s", self.queue, reason)
        await delivery.ack()
