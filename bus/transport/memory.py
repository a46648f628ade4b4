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
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from bus.errors import ConnectionLost, TopologyError, Unroutable
from bus.message import Delivery, Message, amqp_timestamp
from bus.topic import topic_matches
from bus.transport.base import (
    DIRECT_REPLY_TO,
    ExchangeKind,
    OnDelivery,
    QueueSpec,
    Subscription,
    Transport,
)


@dataclass(slots=True)
class _Entry:
    message: Message
    exchange: str
    routing_key: str
    delivery_count: int = 0
    redelivered: bool = False
    expires_at: float | None = None
    offset: int = 0


@dataclass(slots=True, eq=False)
class _Consumer:
    tag: str
    queue: _Queue
    owner: MemoryTransport
    callback: OnDelivery
    prefetch: int
    unacked: dict[int, _Entry] = field(default_factory=dict)
    cancelled: bool = False
    cursor: int = 0  # stream queues: the next offset to deliver

    @property
    def has_capacity(self) -> bool:
        return not self.cancelled and (self.prefetch == 0 or len(self.unacked) < self.prefetch)


@dataclass(slots=True, eq=False)
class _Queue:
    spec: QueueSpec
    owner: MemoryTransport | None
    ready: deque[_Entry] = field(default_factory=deque)
    log: list[_Entry] = field(default_factory=list)  # stream queues keep every message
    consumers: list[_Consumer] = field(default_factory=list)
    turn: int = 0
    had_consumer: bool = False


class MemoryBroker:
    """The shared state behind every `MemoryTransport` with the same URL."""

    def __init__(self) -> None:
        self.exchanges: dict[str, tuple[ExchangeKind, list[tuple[str, str]]]] = {}
        self.queues: dict[str, _Queue] = {}
        self.replies: dict[str, OnDelivery] = {}
        self._tags = itertools.count(1)
        self._dirty: set[str] = set()
        self._scheduled = False
        self.users = 0

    # -- topology ---------------------------------------------------------------------------

    def declare_exchange(self, name: str, kind: ExchangeKind) -> None:
        known = self.exchanges.get(name)
        if known is not None and known[0] != kind:
            raise TopologyError(f"exchange {name!r} exists with type {known[0]!r}, not {kind!r}")
        if known is None:
            self.exchanges[name] = (kind, [])

    def declare_queue(self, spec: QueueSpec, owner: MemoryTransport) -> None:
        known = self.queues.get(spec.name)
        if known is None:
            self.queues[spec.name] = _Queue(spec, owner if spec.exclusive else None)
            return
        if known.spec.arguments != spec.arguments or known.spec.durable != spec.durable:
            raise TopologyError(
                f"queue {spec.name!r} exists with other arguments "
                f"({known.spec.arguments} vs {spec.arguments}): PRECONDITION_FAILED"
            )
        if known.owner is not None and known.owner is not owner:
            raise TopologyError(f"queue {spec.name!r} is exclusive to another connection")

    def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        if queue not in self.queues:
            raise TopologyError(f"no queue {queue!r}")
        if exchange not in self.exchanges:
            raise TopologyError(f"no exchange {exchange!r}")
        bindings = self.exchanges[exchange][1]
        if (queue, routing_key) not in bindings:
            bindings.append((queue, routing_key))

    def delete_queue(self, name: str) -> None:
        queue = self.queues.pop(name, None)
        if queue is None:
            return
        for consumer in queue.consumers:
            consumer.cancelled = True
        for _, bindings in self.exchanges.values():
            bindings[:] = [b for b in bindings if b[0] != name]

    def idle(self, *, ignore: frozenset[str] = frozenset()) -> bool:
        """True when no consumer has work: nothing deliverable waits, nothing is unsettled.

        Replay uses it to know a step is over. Queues in `ignore` (taps) do not count.
        """
        for name, queue in self.queues.items():
            if name in ignore or not queue.consumers:
                continue
            if queue.ready and any(c.has_capacity for c in queue.consumers):
                return False
            if any(c.unacked for c in queue.consumers):
                return False
        return True

    def backlog(self, *, ignore: frozenset[str] = frozenset()) -> list[str]:
        """What keeps the broker from being idle, one line a queue (for error messages)."""
        found = []
        for name, queue in self.queues.items():
            unacked = sum(len(c.unacked) for c in queue.consumers)
            if name not in ignore and (queue.ready or unacked):
                found.append(f"queue {name}: {len(queue.ready)} ready, {unacked} unacked")
        return found

    # -- routing ----------------------------------------------------------------------------

    def route(self, exchange: str, routing_key: str) -> list[_Queue]:
        if exchange == "":
            queue = self.queues.get(routing_key)
            return [queue] if queue is not None else []
        known = self.exchanges.get(exchange)
        if known is None:
            raise TopologyError(f"no exchange {exchange!r}: NOT_FOUND")
        kind, bindings = known
        seen: dict[str, _Queue] = {}
        for queue_name, key in bindings:
            if queue_name in seen:
                continue
            if (key == routing_key) if kind == "direct" else topic_matches(key, routing_key):
                seen[queue_name] = self.queues[queue_name]
        return list(seen.values())

    def deliver_to(self, queue: str, exchange: str, routing_key: str, message: Message) -> None:
        """Put `message` into one queue as if `exchange` had routed it there with
        `routing_key` (replay feeds a queue of a user's own this way, as RabbitMQ would)."""
        target = self.queues.get(queue)
        if target is not None:
            self.enqueue(target, _Entry(message, exchange, routing_key))

    def enqueue(self, queue: _Queue, entry: _Entry) -> None:
        if queue.spec.is_stream:
            entry.offset = len(queue.log)
            queue.log.append(entry)
        else:
            queue.ready.append(entry)
        self.kick(queue.spec.name)

    def kick(self, queue_name: str) -> None:
        self._dirty.add(queue_name)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._dispatch_all)

    def _dispatch_all(self) -> None:
        self._scheduled = False
        while self._dirty:
            dirty = sorted(self._dirty)
            self._dirty.clear()
            for name in dirty:
                queue = self.queues.get(name)
                if queue is not None:
                    self._dispatch(queue)

    def _next_consumer(self, queue: _Queue, ready: Callable[[_Consumer], bool]) -> _Consumer | None:
        count = len(queue.consumers)
        for step in range(count):
            consumer = queue.consumers[(queue.turn + step) % count]
            if ready(consumer):
                queue.turn = (queue.turn + step + 1) % count
                return consumer
        return None

    def _dispatch(self, queue: _Queue) -> None:
        if queue.spec.is_stream:
            for consumer in queue.consumers:
                while consumer.has_capacity and consumer.cursor < len(queue.log):
                    entry = queue.log[consumer.cursor]
                    consumer.cursor += 1
                    self._deliver(consumer, entry)
            return
        now = time.monotonic()
        while queue.ready:
            head = queue.ready[0]
            if head.expires_at is not None and head.expires_at <= now:
                queue.ready.popleft()
                self.dead_letter(queue, head, "expired")
                continue
            taker = self._next_consumer(queue, lambda c: c.has_capacity)
            if taker is None:
                return
            queue.ready.popleft()
            self._deliver(taker, head)

    def _deliver(self, consumer: _Consumer, entry: _Entry) -> None:
        tag = next(self._tags)
        consumer.unacked[tag] = entry
        message = entry.message
        if consumer.queue.spec.arguments.get("x-queue-type") == "quorum" and entry.delivery_count:
            message = replace(
                message, headers={**message.headers, "x-delivery-count": entry.delivery_count}
            )
        elif consumer.queue.spec.is_stream:
            message = replace(message, headers={**message.headers, "x-stream-offset": entry.offset})
        consumer.callback(
            _MemoryDelivery(
                message,
                exchange=entry.exchange,
                routing_key=entry.routing_key,
                redelivered=entry.redelivered,
                delivery_count=entry.delivery_count,
                broker=self,
                consumer=consumer,
                tag=tag,
            )
        )

    # -- settlement -------------------------------------------------------------------------

    def settle(self, consumer: _Consumer, tag: int, *, ack: bool, requeue: bool) -> None:
        entry = consumer.unacked.pop(tag, None)
        if entry is None:
            raise TopologyError(
                f"unknown delivery tag {tag}: already settled (PRECONDITION_FAILED)"
            )
        queue = consumer.queue
        if not ack and not queue.spec.is_stream:
            if requeue:
                self.give_back(queue, entry)
            else:
                self.dead_letter(queue, entry, "rejected")
        self.kick(queue.spec.name)

    def give_back(self, queue: _Queue, entry: _Entry) -> None:
        entry.redelivered = True
        if queue.spec.arguments.get("x-queue-type") == "quorum":
            entry.delivery_count += 1
            limit = queue.spec.arguments.get("x-delivery-limit")
            if limit is not None and entry.delivery_count > int(limit):
                self.dead_letter(queue, entry, "delivery_limit")
                return
        queue.ready.appendleft(entry)
        self.kick(queue.spec.name)

    def dead_letter(self, queue: _Queue, entry: _Entry, reason: str) -> None:
        dlx = queue.spec.arguments.get("x-dead-letter-exchange")
        if dlx is None or dlx not in self.exchanges:
            return
        key = queue.spec.arguments.get("x-dead-letter-routing-key", entry.routing_key)
        death = {
            "queue": queue.spec.name,
            "reason": reason,
            "count": 1,
            "exchange": entry.exchange,
            "routing-keys": [entry.routing_key],
        }
        headers = {k: v for k, v in entry.message.headers.items() if k != "x-delivery-count"}
        headers["x-death"] = [death, *headers.get("x-death", [])]
        headers.setdefault("x-first-death-reason", reason)
        headers.setdefault("x-first-death-queue", queue.spec.name)
        headers.setdefault("x-first-death-exchange", entry.exchange)
        message = replace(entry.message, headers=headers, expiration_ms=None)
        for target in self.route(dlx, key):
            self.enqueue(target, _Entry(message, dlx, key))

    def remove_consumer(self, consumer: _Consumer, *, requeue_unacked: bool) -> None:
        consumer.cancelled = True
        queue = consumer.queue
        if requeue_unacked:
            for entry in reversed(list(consumer.unacked.values())):
                if not queue.spec.is_stream:
                    self.give_back(queue, entry)
            consumer.unacked.clear()
        if consumer in queue.consumers:
            queue.consumers.remove(consumer)
            queue.turn = 0
            if queue.spec.auto_delete and not queue.consumers and queue.had_consumer:
                self.delete_queue(queue.spec.name)


class _MemoryDelivery(Delivery):
    __slots__ = ("_broker", "_consumer", "_tag")

    def __init__(
        self,
        message: Message,
        *,
        exchange: str,
        routing_key: str,
        redelivered: bool,
        delivery_count: int,
        broker: MemoryBroker,
        consumer: _Consumer,
        tag: int,
    ) -> None:
        super().__init__(
            message,
            exchange=exchange,
            routing_key=routing_key,
            redelivered=redelivered,
            delivery_count=delivery_count,
        )
        self._broker = broker
        self._consumer = consumer
        self._tag = tag

    async def ack(self) -> None:
        self._broker.settle(self._consumer, self._tag, ack=True, requeue=False)

    async def nack(self, *, requeue: bool) -> None:
        self._broker.settle(self._consumer, self._tag, ack=False, requeue=requeue)


class _MemorySubscription(Subscription):
    def __init__(self, broker: MemoryBroker, consumer: _Consumer) -> None:
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
            broker.enqueue(queue, _Entry(message, exchange, routing_key, expires_at=expires_at))

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
        consumer = _Consumer(f"ctag-{id(on_delivery)}", target, self, on_delivery, prefetch)
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
