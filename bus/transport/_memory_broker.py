"""The embedded broker's shared state: exchanges, queues, consumers, dispatch and settlement.

One `MemoryBroker` per `memory://` name; every `MemoryTransport` on that name is a connection
to it (see `bus.transport.memory` for the semantics it keeps).
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from bus.errors import TopologyError
from bus.message import Delivery, Message
from bus.topic import topic_matches
from bus.transport.base import ExchangeKind, OnDelivery, QueueSpec

if TYPE_CHECKING:
    from bus.transport.memory import MemoryTransport


@dataclass(slots=True)
class Entry:
    message: Message
    exchange: str
    routing_key: str
    delivery_count: int = 0
    redelivered: bool = False
    expires_at: float | None = None
    offset: int = 0


@dataclass(slots=True, eq=False)
class Consumer:
    tag: str
    queue: Queue
    owner: MemoryTransport
    callback: OnDelivery
    prefetch: int
    unacked: dict[int, Entry] = field(default_factory=dict)
    cancelled: bool = False
    cursor: int = 0  # stream queues: the next offset to deliver

    @property
    def has_capacity(self) -> bool:
        return not self.cancelled and (self.prefetch == 0 or len(self.unacked) < self.prefetch)


@dataclass(slots=True, eq=False)
class Queue:
    spec: QueueSpec
    owner: MemoryTransport | None
    ready: deque[Entry] = field(default_factory=deque)
    log: list[Entry] = field(default_factory=list)  # stream queues keep every message
    consumers: list[Consumer] = field(default_factory=list)
    turn: int = 0
    had_consumer: bool = False


class MemoryBroker:
    """The shared state behind every `MemoryTransport` with the same URL."""

    def __init__(self) -> None:
        self.exchanges: dict[str, tuple[ExchangeKind, list[tuple[str, str]]]] = {}
        self.queues: dict[str, Queue] = {}
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
            self.queues[spec.name] = Queue(spec, owner if spec.exclusive else None)
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

    def route(self, exchange: str, routing_key: str) -> list[Queue]:
        if exchange == "":
            queue = self.queues.get(routing_key)
            return [queue] if queue is not None else []
        known = self.exchanges.get(exchange)
        if known is None:
            raise TopologyError(f"no exchange {exchange!r}: NOT_FOUND")
        kind, bindings = known
        seen: dict[str, Queue] = {}
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
            self.enqueue(target, Entry(message, exchange, routing_key))

    def enqueue(self, queue: Queue, entry: Entry) -> None:
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

    def _next_consumer(self, queue: Queue, ready: Callable[[Consumer], bool]) -> Consumer | None:
        count = len(queue.consumers)
        for step in range(count):
            consumer = queue.consumers[(queue.turn + step) % count]
            if ready(consumer):
                queue.turn = (queue.turn + step + 1) % count
                return consumer
        return None

    def _dispatch(self, queue: Queue) -> None:
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

    def _deliver(self, consumer: Consumer, entry: Entry) -> None:
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
            MemoryDelivery(
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

    def settle(self, consumer: Consumer, tag: int, *, ack: bool, requeue: bool) -> None:
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

    def give_back(self, queue: Queue, entry: Entry) -> None:
        entry.redelivered = True
        if queue.spec.arguments.get("x-queue-type") == "quorum":
            entry.delivery_count += 1
            limit = queue.spec.arguments.get("x-delivery-limit")
            if limit is not None and entry.delivery_count > int(limit):
                self.dead_letter(queue, entry, "delivery_limit")
                return
        queue.ready.appendleft(entry)
        self.kick(queue.spec.name)

    def dead_letter(self, queue: Queue, entry: Entry, reason: str) -> None:
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
            self.enqueue(target, Entry(message, dlx, key))

    def remove_consumer(self, consumer: Consumer, *, requeue_unacked: bool) -> None:
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


class MemoryDelivery(Delivery):
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
        consumer: Consumer,
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
