"""The transport port: the few AMQP 0-9-1 operations govbus needs, with two adapters.

`AmqpTransport` speaks to RabbitMQ through aio-pika; `MemoryTransport` is an embedded broker in
the same process with RabbitMQ's semantics. One contract suite (tests/contract) runs against
both; a difference between them is a bug in the embedded one.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from bus.message import Delivery, Message

ExchangeKind = Literal["topic", "direct"]
OnDelivery = Callable[[Delivery], None]

# The address a requester puts in `reply_to` to receive replies on its own channel.
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


@dataclass(frozen=True, slots=True)
class QueueSpec:
    """A queue declaration. `arguments` are RabbitMQ's `x-*` queue arguments."""

    name: str
    durable: bool = True
    auto_delete: bool = False
    exclusive: bool = False
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def is_stream(self) -> bool:
        return self.arguments.get("x-queue-type") == "stream"


class Subscription(abc.ABC):
    """A registered consumer.

    `cancel` stops new deliveries while the unsettled ones can still be settled (graceful
    shutdown); `close` also gives every unsettled delivery back to the queue.
    """

    @abc.abstractmethod
    async def cancel(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...


class Transport(abc.ABC):
    """Port for a message broker connection. Declarations are idempotent.

    `keeps_log`: whether this broker keeps the `govbus.log` stream, the durable record of
    every event (`Bus.start` declares it). RabbitMQ does; the embedded broker does not, as it
    would hold every event in memory for the life of the process (`govbus up` keeps its log
    in its store instead).
    """

    url: str
    keeps_log: ClassVar[bool] = False

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection; raises `BrokerUnreachable` within the connect timeout, or
        `LoginRefused` when the broker refuses the user (credentials, vhost)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @property
    @abc.abstractmethod
    def is_connected(self) -> bool: ...

    @abc.abstractmethod
    async def declare_exchange(
        self, name: str, kind: ExchangeKind, *, durable: bool = True
    ) -> None: ...

    @abc.abstractmethod
    async def declare_queue(self, spec: QueueSpec) -> None: ...

    @abc.abstractmethod
    async def bind(self, queue: str, exchange: str, routing_key: str) -> None: ...

    @abc.abstractmethod
    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: Message,
        *,
        mandatory: bool = True,
        confirm: bool = True,
    ) -> None:
        """Publish; with `confirm` wait for the broker's confirm.

        A mandatory message no queue takes raises `Unroutable` (with `confirm`). Without
        `confirm` the call returns once the message is handed to the connection (replies).
        """

    @abc.abstractmethod
    async def consume(
        self,
        queue: str,
        on_delivery: OnDelivery,
        *,
        prefetch: int,
        arguments: dict[str, Any] | None = None,
    ) -> Subscription:
        """Start a consumer; it survives reconnections until cancelled.

        `on_delivery` is called synchronously for every delivery, in order; it must not block.
        `arguments` are consumer arguments (e.g. `x-stream-offset` for stream queues).
        """

    @abc.abstractmethod
    async def consume_replies(self, on_delivery: OnDelivery) -> None:
        """Receive direct reply-to replies (auto-acked) for requests published here."""

    @abc.abstractmethod
    async def queue_state(self, queue: str) -> tuple[int, int]:
        """(ready messages, consumers) of a queue; raises `TopologyError` if it does not exist."""

    @abc.abstractmethod
    async def delete_queue(self, queue: str) -> None: ...

    def on_reconnect(self, callback: Callable[[], None]) -> None:  # noqa: B027
        """Call `callback` after the connection came back (the embedded broker never drops)."""

    def on_disconnect(self, callback: Callable[[BaseException | None], None]) -> None:  # noqa: B027
        """Call `callback` when the connection drops unexpectedly."""
