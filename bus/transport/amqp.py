"""`amqp://` and `amqps://`: RabbitMQ through aio-pika.

aio-pika opens the connection and channels; the hot paths (publish, consume, ack) call the
underlying aiormq channel directly, so a message costs one properties object and no wrapper.

Reconnection is ours rather than aio-pika's robust connection, whose open bugs sit exactly
here (consumers not restored, RPC futures left hanging): when the connection drops, every
waiter fails at once with `ConnectionLost`, and a supervisor reconnects with backoff,
re-declares the recorded topology and restores every consumer before it reports ready again.

The topology is recorded as typed declarations (`ExchangeDeclaration`, `QueueSpec`,
`Binding`), and channels come up one way (`_set_up`) on connect, on reconnect and after a
channel error closed the publishing channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aio_pika
import aiormq
import aiormq.exceptions as amqp_exc
from aio_pika.abc import AbstractChannel, AbstractConnection
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from bus.errors import (
    AccessRefused,
    BrokerUnreachable,
    BusError,
    ConnectionLost,
    LoginRefused,
    PublishError,
    TopologyError,
    Unroutable,
)
from bus.message import Message
from bus.transport._amqp_delivery import AmqpDelivery, dropped, properties
from bus.transport._amqp_url import connect_error, split_nodes, where
from bus.transport._tls import tls_context
from bus.transport.base import ExchangeKind, OnDelivery, QueueSpec, Subscription, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ExchangeDeclaration:
    """An exchange the transport declared (and declares again after a reconnection)."""

    name: str
    kind: ExchangeKind
    durable: bool


@dataclass(frozen=True, slots=True)
class Binding:
    """A queue bound to an exchange with a routing key."""

    queue: str
    exchange: str
    routing_key: str


Declaration = ExchangeDeclaration | QueueSpec | Binding
"""The topology a transport records, in the order it was declared."""


def _describe(declaration: Declaration) -> str:
    if isinstance(declaration, ExchangeDeclaration):
        return f"exchange {declaration.name!r}"
    if isinstance(declaration, QueueSpec):
        return f"queue {declaration.name!r}"
    return (
        f"the binding of queue {declaration.queue!r} to {declaration.exchange!r} "
        f"with key {declaration.routing_key!r}"
    )


@dataclass(eq=False)
class _AmqpSubscription(Subscription):
    transport: AmqpTransport
    queue: str
    on_delivery: OnDelivery
    prefetch: int
    arguments: dict[str, Any] | None
    channel: AbstractChannel | None = None
    tag: str | None = None
    cancelled: bool = False

    async def start(self, connection: AbstractConnection) -> None:
        self.channel = await connection.channel(publisher_confirms=False)
        await self.channel.set_qos(prefetch_count=self.prefetch)
        raw = await self.channel.get_underlay_channel()
        deliver = self.on_delivery

        async def callback(delivered: aiormq.abc.DeliveredMessage) -> None:
            deliver(AmqpDelivery(delivered, raw))

        ok = await raw.basic_consume(self.queue, callback, arguments=self.arguments)
        self.tag = ok.consumer_tag

    async def cancel(self) -> None:
        self.cancelled = True
        channel, tag = self.channel, self.tag
        if channel is not None and tag is not None and not channel.is_closed:
            with contextlib.suppress(amqp_exc.AMQPError, ConnectionError, RuntimeError):
                raw = await channel.get_underlay_channel()
                await raw.basic_cancel(tag)

    async def close(self) -> None:
        self.cancelled = True
        self.transport.subscriptions.discard(self)
        channel, self.channel = self.channel, None
        if channel is not None and not channel.is_closed:
            with contextlib.suppress(amqp_exc.AMQPError, ConnectionError, RuntimeError):
                await channel.close()


class AmqpTransport(Transport):
    """A self-healing connection to RabbitMQ: to one node, or to the first node of a cluster
    that answers (`url` may list several, comma-separated), moving on to the next when its node
    is lost."""

    keeps_log = True

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        ready_timeout: float = 10.0,
        name: str = "govbus",
    ) -> None:
        self.nodes = split_nodes(url)
        self._node = 0  # index in `nodes` of the node connected to (or tried first)
        self.url = self.nodes[0]
        self.connect_timeout = connect_timeout
        self.ready_timeout = ready_timeout
        self.name = name
        self._connection: AbstractConnection | None = None
        self._confirm: aiormq.abc.AbstractChannel | None = None
        self._fast: aiormq.abc.AbstractChannel | None = None
        self._channels: list[AbstractChannel] = []
        self._ready = asyncio.Event()
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        self._topology: list[Declaration] = []
        self.subscriptions: set[_AmqpSubscription] = set()
        self._reply_handler: OnDelivery | None = None
        self._replies_on: aiormq.abc.AbstractChannel | None = None
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._disconnect_callbacks: list[Callable[[BaseException | None], None]] = []
        self.reconnects = 0
        self._tls: dict[str, ssl.SSLContext] = {}
        self._renewing: asyncio.Task[None] | None = None

    @property
    def where(self) -> str:
        """The node connected to, fit for a log line: no user, no password."""
        return where(self.url)

    # -- connection life ---------------------------------------------------------------------

    async def connect(self) -> None:
        self._closing = False
        await self._open()

    async def _open(self, *, first: int | None = None) -> None:
        """Connect to the first node that answers, trying them in order from `first` (the
        current node by default), so that a lost node's clients move on to the next."""
        start = self._node if first is None else first
        failures: list[ConnectionLost] = []
        for step in range(len(self.nodes)):
            index = (start + step) % len(self.nodes)
            try:
                connection = await self._connect(self.nodes[index])
            except ConnectionLost as exc:
                failures.append(exc)
                continue
            self._node, self.url = index, self.nodes[index]
            break
        else:
            refused = [exc for exc in failures if isinstance(exc, LoginRefused)]
            if len(failures) == 1 or refused:
                raise (refused or failures)[0]
            raise BrokerUnreachable(
                f"no node of the cluster answered: {'; '.join(map(str, failures))}"
            )
        connection.close_callbacks.add(self._on_connection_close)
        self._connection = connection
        try:
            await self._set_up(connection, restore=True)
        except amqp_exc.AMQPError as exc:
            await connection.close()
            raise ConnectionLost(f"setting up the connection failed: {exc}") from exc
        self._ready.set()

    async def _connect(self, url: str) -> AbstractConnection:
        tls = self._tls.get(url)
        if urlsplit(url).scheme == "amqps" and tls is None:
            tls = self._tls[url] = await asyncio.to_thread(tls_context, url)  # reads PEM files
        try:
            return await aio_pika.connect(
                url,
                timeout=self.connect_timeout,
                client_properties={"connection_name": self.name},
                ssl_context=tls,
            )
        except (OSError, TimeoutError, amqp_exc.AMQPError) as exc:
            raise connect_error(url, exc) from exc

    async def _set_up(self, connection: AbstractConnection, *, restore: bool) -> None:
        """The one way channels come up, on connect, reconnect and after a channel error:
        the confirm and fast publishing channels, direct replies on the confirm one, and on a
        new connection (`restore`) the recorded topology and every live subscription."""
        confirm = await connection.channel(publisher_confirms=True, on_return_raises=True)
        fast = await connection.channel(publisher_confirms=False)
        self._channels = [confirm, fast]
        self._confirm = await confirm.get_underlay_channel()
        self._fast = await fast.get_underlay_channel()
        if restore:
            for declaration in self._topology:
                await self._declare(declaration)
        if self._reply_handler is not None:
            await self._start_replies(self._reply_handler)
        if restore:
            for sub in list(self.subscriptions):
                if not sub.cancelled:
                    await sub.start(connection)

    def _on_connection_close(self, _: object, exc: BaseException | None = None) -> None:
        if self._closing:
            return
        self._ready.clear()
        log.warning("broker connection to %s lost (%s); reconnecting", self.where, exc or "closed")
        for callback in self._disconnect_callbacks:
            callback(exc)
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(ConnectionLost),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            reraise=True,
        )
        # The node that was lost is tried last: on a cluster, the next one is likely up.
        first = (self._node + 1) % len(self.nodes)
        async for attempt in retrying:
            with attempt:
                if self._closing:
                    return
                await self._open(first=first)
        self.reconnects += 1
        log.info(
            "broker connection restored to %s (%d consumers)", self.where, len(self.subscriptions)
        )
        for callback in self._reconnect_callbacks:
            callback()

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnect_callbacks.append(callback)

    def on_disconnect(self, callback: Callable[[BaseException | None], None]) -> None:
        self._disconnect_callbacks.append(callback)

    async def close(self) -> None:
        self._closing = True
        self._ready.clear()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError, BusError):
                await self._supervisor
        for sub in list(self.subscriptions):
            await sub.close()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed:
            with contextlib.suppress(amqp_exc.AMQPError, ConnectionError, RuntimeError):
                await connection.close()

    @property
    def is_connected(self) -> bool:
        return self._ready.is_set()

    async def _wait_ready(self) -> None:
        if self._ready.is_set():
            return
        if self._closing or (self._connection is None and self._supervisor is None):
            raise ConnectionLost("the transport is not connected")
        try:
            await asyncio.wait_for(self._ready.wait(), self.ready_timeout)
        except TimeoutError as exc:
            raise ConnectionLost(
                f"the broker has been unreachable for {self.ready_timeout:g} s"
            ) from exc

    async def _guard(self, work: Awaitable[T], what: str) -> T:
        """Run a broker operation, translating aiormq's errors into ours."""
        try:
            return await work
        except amqp_exc.PublishError as exc:
            frame = exc.frame
            raise Unroutable(
                getattr(frame, "exchange", ""), getattr(frame, "routing_key", "")
            ) from exc
        except amqp_exc.DeliveryError as exc:
            raise PublishError(f"{what}: the broker refused the message ({exc})") from exc
        except (amqp_exc.ChannelNotFoundEntity, amqp_exc.ChannelPreconditionFailed) as exc:
            await self._reopen_channels()
            raise TopologyError(f"{what}: {exc}") from exc
        except amqp_exc.ChannelAccessRefused as exc:
            # The broker closed the channel it was refused on; publishing goes on on new ones.
            if any(c is None or c.is_closed for c in (self._confirm, self._fast)):
                await self._reopen_channels()
            raise AccessRefused(f"{what}: access refused ({exc})") from exc
        except (
            amqp_exc.AMQPError,
            ConnectionError,
            aiormq.exceptions.ChannelInvalidStateError,
        ) as exc:
            raise ConnectionLost(
                f"{what}: the connection dropped ({exc or type(exc).__name__})"
            ) from exc
        except asyncio.CancelledError as exc:
            if not dropped(exc):
                raise
            raise ConnectionLost(f"{what}: the connection dropped") from exc

    async def _reopen_channels(self) -> None:
        """A channel error closes the channel: open fresh ones so publishing goes on (the
        broker keeps the topology and the subscriptions live on channels of their own)."""
        if self._connection is None or self._connection.is_closed:
            return
        for channel in self._channels:
            with contextlib.suppress(amqp_exc.AMQPError, RuntimeError):
                await channel.close()
        await self._set_up(self._connection, restore=False)

    # -- topology ----------------------------------------------------------------------------

    async def _declare(self, declaration: Declaration) -> None:
        channel = self._confirm
        assert channel is not None
        if isinstance(declaration, ExchangeDeclaration):
            await channel.exchange_declare(
                declaration.name, exchange_type=declaration.kind, durable=declaration.durable
            )
        elif isinstance(declaration, QueueSpec):
            await channel.queue_declare(
                declaration.name,
                durable=declaration.durable,
                auto_delete=declaration.auto_delete,
                exclusive=declaration.exclusive,
                arguments=declaration.arguments or None,
            )
        else:
            await channel.queue_bind(
                declaration.queue, declaration.exchange, routing_key=declaration.routing_key
            )

    async def _record(self, declaration: Declaration) -> None:
        """Declare now, and again after every reconnection."""
        await self._wait_ready()
        await self._guard(self._declare(declaration), f"declaring {_describe(declaration)}")
        if declaration not in self._topology:
            self._topology.append(declaration)

    async def declare_exchange(
        self, name: str, kind: ExchangeKind, *, durable: bool = True
    ) -> None:
        await self._record(ExchangeDeclaration(name, kind, durable))

    async def declare_queue(self, spec: QueueSpec) -> None:
        await self._record(spec)

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        await self._record(Binding(queue, exchange, routing_key))

    async def delete_queue(self, queue: str) -> None:
        await self._wait_ready()
        assert self._confirm is not None
        await self._guard(self._confirm.queue_delete(queue), f"deleting queue {queue!r}")
        # Forgotten with its bindings, so a reconnection does not bring it back.
        self._topology = [
            d
            for d in self._topology
            if not (isinstance(d, QueueSpec) and d.name == queue)
            and not (isinstance(d, Binding) and d.queue == queue)
        ]

    async def queue_state(self, queue: str) -> tuple[int, int]:
        await self._wait_ready()
        assert self._confirm is not None
        ok = await self._guard(self._confirm.queue_declare(queue, passive=True), f"queue {queue!r}")
        return int(ok.message_count or 0), int(ok.consumer_count or 0)

    # -- messages ----------------------------------------------------------------------------

    async def publish(
        self,
        exchange: str,
        routing_key: str,
        message: Message,
        *,
        mandatory: bool = True,
        confirm: bool = True,
    ) -> None:
        if not self._ready.is_set():
            await self._wait_ready()
        channel = self._confirm if confirm else self._fast
        assert channel is not None
        try:
            await self._guard(
                channel.basic_publish(
                    message.body,
                    exchange=exchange,
                    routing_key=routing_key,
                    properties=properties(message),
                    mandatory=mandatory and confirm,
                ),
                f"publishing to {exchange!r} with key {routing_key!r}",
            )
        except PublishError:
            await self._after_nack(channel)
            raise

    async def _after_nack(self, channel: aiormq.abc.AbstractChannel) -> None:
        """A nack may mean the channel is stuck: on RabbitMQ 3.10, a channel opened while a
        stream (`govbus.log`) elects a new leader after losing a node nacks every publish
        routed to that stream from then on, while a fresh channel publishes fine. So the
        first nack on the current channel opens new ones (once: a burst of nacks shares it;
        an RPC call waiting for its reply on the old channel gets none and ends at its deadline)."""
        if channel is not self._confirm or self._renewing is not None:
            return
        self._renewing = asyncio.get_running_loop().create_task(self._reopen_channels())
        try:
            with contextlib.suppress(BusError, amqp_exc.AMQPError):
                await asyncio.shield(self._renewing)
        finally:
            self._renewing = None

    async def consume(
        self,
        queue: str,
        on_delivery: OnDelivery,
        *,
        prefetch: int,
        arguments: dict[str, Any] | None = None,
    ) -> Subscription:
        await self._wait_ready()
        assert self._connection is not None
        sub = _AmqpSubscription(self, queue, on_delivery, prefetch, arguments)
        await self._guard(sub.start(self._connection), f"consuming from {queue!r}")
        self.subscriptions.add(sub)
        return sub

    async def _start_replies(self, on_delivery: OnDelivery) -> None:
        channel = self._confirm
        assert channel is not None
        if self._replies_on is channel:
            return  # a reconnection already started it on this channel
        self._replies_on = channel

        async def callback(delivered: aiormq.abc.DeliveredMessage) -> None:
            on_delivery(AmqpDelivery(delivered, channel))

        await channel.basic_consume("amq.rabbitmq.reply-to", callback, no_ack=True)

    async def consume_replies(self, on_delivery: OnDelivery) -> None:
        await self._wait_ready()
        self._reply_handler = on_delivery
        await self._guard(self._start_replies(on_delivery), "consuming direct replies")
