"""`memory://`: an embedded broker in this process with RabbitMQ's semantics.

It is a product feature (the default of `govbus up`, fast tests, replay), so it is faithful
where govbus relies on the broker: topic routing with `*` and `#`, competing consumers with
round-robin dispatch and prefetch, ack/nack/requeue with the redelivered flag, quorum queues'
`x-delivery-count` and `x-delivery-limit`, dead-lettering with `x-death`, mandatory returns,
direct reply-to, auto-delete and exclusive queues, per-message expiration and stream queues
read from an offset; the AMQP `timestamp` is delivered in whole seconds, as RabbitMQ's
wire carries it. Dispatch happens on the event loop (`call_soon`), never inside `publish`,
so ordering is deterministic for a given sequence of calls.

`memory://` is one broker per process; `memory://name` names another (tests use unique names).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from bus.errors import ConnectionLost, TopologyError, Unroutable
from bus.message import Delivery, Message, amqp_timestamp
from bus.transport._memory_broker import Consumer, Entry, MemoryBroker
from bus.transport.base import (
    DIRECT_REPLY_TO,
    ExchangeKind,
    OnDelivery,
    QueueSpec,
    Subscription,
    Transport,
)

__all__ = ["MemoryBroker", "MemoryTransport"]


class _MemorySubscription(Subscription):
    def __init__(self, broker: MemoryBroker, consumer: Consumer) -> None:
        self._broker = broker
        self._consumer = consumer

    async def cancel(self) -> None:
        self._broker.remove_consumer(self._consumer, requeue_unacked=False)

    async def close(self) -> None:
        self._consumer.owner.subscriptions.discard(self)
        self._broker.remove_consumer(self._consumer, requeue_unacked=True)


_brokers: dict[str, MemoryBroker] = {}


class MemoryTransport(Transport):
    """A connection to the embedded broker named by the URL (`memory://` or `memory://name`).

    It keeps no `govbus.log` stream (`keeps_log` is False): stream queues work, but nothing
    declares one that would hold every event of the process.
    """

    keeps_log = False

    def __init__(self, url: str = "memory://") -> None:
        self.url = url
        parts = urlsplit(url)
        self._name = (parts.netloc + parts.path).strip("/") or "default"
        self._broker: MemoryBroker | None = None
        self.subscriptions: set[_MemorySubscription] = set()
        self._reply_token: str | None = None

    @property
    def broker(self) -> MemoryBroker:
        if self._broker is None:
            raise ConnectionLost(f"{self.url} is not connected")
        return self._broker

    async def connect(self) -> None:
        if self._broker is None:
            self._broker = _brokers.setdefault(self._name, MemoryBroker())
            self._broker.users += 1

    async def close(self) -> None:
        broker = self._broker
        if broker is None:
            return
        for sub in list(self.subscriptions):
            await sub.close()
        if self._reply_token is not None:
            broker.replies.pop(self._reply_token, None)
        for name, queue in list(broker.queues.items()):
            if queue.owner is self:
                broker.delete_queue(name)
        broker.users -= 1
        if broker.users == 0 and _brokers.get(self._name) is broker:
            del _brokers[self._name]
        self._broker = None

    @property
    def is_connected(self) -> bool:
        return self._broker is not None

    async def declare_exchange(
        self, name: str, kind: ExchangeKind, *, durable: bool = True
    ) -> None:
        self.broker.declare_exchange(name, kind)

    async def declare_queue(self, spec: QueueSpec) -> None:
        self.broker.declare_queue(spec, self)

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        self.broker.bind(queue, exchange, routing_key)

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: Message,
        *,
        mandatory: bool = True,
        confirm: bool = True,
    ) -> None:
        broker = self.broker
        stamp = message.timestamp
        if stamp is not None and (stamp.microsecond or stamp.tzinfo is not UTC):
            # The AMQP timestamp is whole seconds: deliver what RabbitMQ would.
            message = replace(message, timestamp=amqp_timestamp(stamp))
        if message.reply_to == DIRECT_REPLY_TO:
            if self._reply_token is None:
                raise TopologyError(
                    "direct reply-to needs consume_replies() first: PRECONDITION_FAILED"
                )
            message = replace(message, reply_to=f"{DIRECT_REPLY_TO}.{self._reply_token}")
        if exchange == "" and routing_key.startswith(DIRECT_REPLY_TO + "."):
            callback = broker.replies.get(routing_key.removeprefix(DIRECT_REPLY_TO + "."))
            if callback is not None:
                asyncio.get_running_loop().call_soon(callback, _ReplyDelivery(message, routing_key))
            return
        queues = broker.route(exchange, routing_key)
        if not queues:
            if mandatory and confirm:
                raise Unroutable(exchange, routing_key)
            return
        expires_at = (
            time.monotonic() + message.expiration_ms / 1000
            if message.expiration_ms is not None
            else None
        )
        for queue in queues:
            broker.enqueue(queue, Entry(message, exchange, routing_key, expires_at=expires_at))

    async def consume(
        self,
        queue: str,
        on_delivery: OnDelivery,
        *,
        prefetch: int,
        arguments: dict[str, Any] | None = None,
    ) -> Subscription:
        broker = self.broker
        target = broker.queues.get(queue)
        if target is None:
            raise TopologyError(f"no queue {queue!r}: NOT_FOUND")
        if target.owner is not None and target.owner is not self:
            raise TopologyError(f"queue {queue!r} is exclusive to another connection")
        consumer = Consumer(f"ctag-{id(on_delivery)}", target, self, on_delivery, prefetch)
        if target.spec.is_stream:
            if prefetch <= 0:
                raise TopologyError("a stream consumer needs a prefetch (basic.qos)")
            offset = (arguments or {}).get("x-stream-offset", "next")
            if offset == "first":
                consumer.cursor = 0
            elif offset == "last":
                consumer.cursor = max(len(target.log) - 1, 0)
            elif isinstance(offset, int):
                consumer.cursor = max(0, min(offset, len(target.log)))
            else:
                consumer.cursor = len(target.log)
        target.consumers.append(consumer)
        target.had_consumer = True
        sub = _MemorySubscription(broker, consumer)
        self.subscriptions.add(sub)
        broker.kick(queue)
        return sub

    async def consume_replies(self, on_delivery: OnDelivery) -> None:
        if self._reply_token is None:
            self._reply_token = f"{id(self):x}.{next(self.broker._tags)}"
        self.broker.replies[self._reply_token] = on_delivery

    async def queue_state(self, queue: str) -> tuple[int, int]:
        target = self.broker.queues.get(queue)
        if target is None:
            raise TopologyError(f"no queue {queue!r}: NOT_FOUND")
        ready = len(target.log) if target.spec.is_stream else len(target.ready)
        return ready, len(target.consumers)

    async def delete_queue(self, queue: str) -> None:
        self.broker.delete_queue(queue)


class _ReplyDelivery(Delivery):
    """Replies are auto-acknowledged, as direct reply-to requires."""

    __slots__ = ()

    def __init__(self, message: Message, routing_key: str) -> None:
        super().__init__(
            message, exchange="", routing_key=routing_key, redelivered=False, delivery_count=0
        )

    async def ack(self) -> None:
        return None

    async def nack(self, *, requeue: bool) -> None:
        return None
