"""`amqp://` and `amqps://`: RabbitMQ through aio-pika.

aio-pika opens the connection and channels; the hot paths (publish, consume, ack) call the
underlying aiormq channel directly, so a message costs one properties object and no wrapper.

Reconnection is ours rather than aio-pika's robust connection, whose open bugs sit exactly
here (consumers not restored, RPC futures left hanging): when the connection drops, every
waiter fails at once with `ConnectionLost`, and a supervisor reconnects with backoff,
re-declares the recorded topology and restores every consumer before it reports ready again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
import aiormq.exceptions as amqp_exc
from aio_pika.abc import AbstractChannel, AbstractConnection
from pamqp import commands as spec
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

from bus.errors import (
    AccessRefused,
    BrokerUnreachable,
    BusError,
    ConfigError,
    ConnectionLost,
    LoginRefused,
    PublishError,
    TopologyError,
    Unroutable,
)
from bus.message import Delivery, Message
from bus.transport._tls import check_query, tls_context, tls_failure
from bus.transport.base import ExchangeKind, OnDelivery, QueueSpec, Subscription, Transport

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_HEARTBEAT_S = 10


def normalize_url(url: str) -> str:
    """Validate an AMQP URL and give it govbus' default heartbeat when it names none."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(
            f"GOVBUS_URL must look like amqp://user:pass@host:5672/vhost, got {url!r}"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"GOVBUS_URL has a bad port: {url!r}") from exc
    query = dict(parse_qsl(parts.query))
    check_query(parts.scheme, query)
    query.setdefault("heartbeat", str(DEFAULT_HEARTBEAT_S))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _connect_error(url: str, exc: BaseException) -> ConnectionLost:
    """Why a connection could not be made, naming user and address (never the password)."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    where = f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}"
    user = unquote(parts.username or "guest")
    # Before Connection.OpenOk: RabbitMQ closes with ACCESS_REFUSED on bad credentials
    # (aiormq: ProbableAuthenticationError), with NOT_ALLOWED on a vhost the user may not open
    # (aiormq: a Connection.Close where it expected OpenOk).
    if isinstance(exc, amqp_exc.ProbableAuthenticationError):
        return LoginRefused(
            f"authentication failed: the broker at {where} refused user {user!r} "
            "(ACCESS_REFUSED: wrong user name or password)"
        )
    if isinstance(exc, amqp_exc.InvalidFrameError) and "Connection.Close" in str(exc):
        vhost = unquote(parts.path[1:]) or "/"
        return LoginRefused(
            f"the broker at {where} did not let user {user!r} open vhost {vhost!r} "
            "(NOT_ALLOWED: no such vhost, or no permission on it)"
        )
    tls = None
    if parts.scheme == "amqps":
        tls = tls_failure(exc, client_cert="certfile" in parts.query)
    reason = tls or exc or type(exc).__name__
    return BrokerUnreachable(f"cannot reach the broker at {where}: {reason}")


def _properties(message: Message) -> spec.Basic.Properties:
    return spec.Basic.Properties(
        content_type=message.content_type,
        headers=message.headers or None,
        delivery_mode=2 if message.persistent else 1,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        expiration=str(message.expiration_ms) if message.expiration_ms is not None else None,
        message_id=message.message_id,
        timestamp=message.timestamp,
        message_type=message.type,
        app_id=message.app_id,
    )


def _message(delivered: aiormq.abc.DeliveredMessage) -> Message:
    props = delivered.header.properties
    return Message(
        body=delivered.body,
        message_id=props.message_id,
        type=props.message_type,
        timestamp=props.timestamp,
        app_id=props.app_id,
        content_type=props.content_type,
        correlation_id=props.correlation_id,
        reply_to=props.reply_to,
        headers=props.headers or {},
        expiration_ms=int(props.expiration) if props.expiration else None,
        persistent=props.delivery_mode == 2,
    )


def _dropped(exc: asyncio.CancelledError) -> bool:
    """True when aiormq cancelled our operation because the connection died (it passes its
    reader task's cancellation on to every pending future), False when the caller's own task
    is being cancelled. The first is a `ConnectionLost`: let it through as a cancellation and
    the caller's task ends as if cancelled (a publisher stops publishing, a consumer stops
    consuming while the broker still counts it)."""
    task = asyncio.current_task()
    return task is None or not task.cancelling()


class _AmqpDelivery(Delivery):
    __slots__ = ("_channel", "_tag")

    def __init__(
        self, delivered: aiormq.abc.DeliveredMessage, channel: aiormq.abc.AbstractChannel
    ) -> None:
        frame = delivered.delivery
        assert isinstance(frame, spec.Basic.Deliver | spec.Basic.Return)
        message = _message(delivered)
        count = message.headers.get("x-delivery-count", 0)
        super().__init__(
            message,
            exchange=frame.exchange or "",
            routing_key=frame.routing_key or "",
            redelivered=bool(getattr(frame, "redelivered", False)),
            delivery_count=int(count) if isinstance(count, int) else 0,
        )
        self._channel = channel
        self._tag = getattr(frame, "delivery_tag", 0)

    async def ack(self) -> None:
        await self._settle(self._channel.basic_ack(self._tag, wait=False), "ack")

    async def nack(self, *, requeue: bool) -> None:
        await self._settle(self._channel.basic_nack(self._tag, requeue=requeue), "nack")

    @staticmethod
    async def _settle(frame: Awaitable[object], what: str) -> None:
        try:
            await frame
        except (
            amqp_exc.AMQPError,
            aiormq.exceptions.ChannelInvalidStateError,
            ConnectionError,
        ) as exc:
            # The channel is gone: the broker gives the message back, and inboxes absorb it.
            raise ConnectionLost(f"{what} failed, the message will be redelivered: {exc}") from exc
        except asyncio.CancelledError as exc:
            if not _dropped(exc):
                raise
            raise ConnectionLost(f"{what} failed, the message will be redelivered") from exc


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
            deliver(_AmqpDelivery(delivered, raw))

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
    """A self-healing connection to RabbitMQ."""

    keeps_log = True

    def __init__(
        self,
        url: str,
        *,
        connect_timeout: float = 5.0,
        ready_timeout: float = 10.0,
        name: str = "govbus",
    ) -> None:
        self.url = normalize_url(url)
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
        self._topology: list[tuple[str, tuple[Any, ...]]] = []
        self.subscriptions: set[_AmqpSubscription] = set()
        self._reply_handler: OnDelivery | None = None
        self._replies_on: aiormq.abc.AbstractChannel | None = None
        self._reconnect_callbacks: list[Callable[[], None]] = []
        self._disconnect_callbacks: list[Callable[[BaseException | None], None]] = []
        self.reconnects = 0
        self._tls: ssl.SSLContext | None = None

    # -- connection life ---------------------------------------------------------------------

    async def connect(self) -> None:
        self._closing = False
        await self._open()

    async def _open(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme == "amqps" and self._tls is None:
            self._tls = await asyncio.to_thread(tls_context, self.url)  # reads the PEM files
        try:
            connection = await aio_pika.connect(
                self.url,
                timeout=self.connect_timeout,
                client_properties={"connection_name": self.name},
                ssl_context=self._tls,
            )
        except (OSError, TimeoutError, amqp_exc.AMQPError) as exc:
            raise _connect_error(self.url, exc) from exc
        connection.close_callbacks.add(self._on_connection_close)
        self._connection = connection
        try:
            confirm = await connection.channel(publisher_confirms=True, on_return_raises=True)
            fast = await connection.channel(publisher_confirms=False)
            self._channels = [confirm, fast]
            self._confirm = await confirm.get_underlay_channel()
            self._fast = await fast.get_underlay_channel()
            for op, args in self._topology:
                await self._declare(op, args)
            if self._reply_handler is not None:
                await self._start_replies(self._reply_handler)
            for sub in list(self.subscriptions):
                if not sub.cancelled:
                    await sub.start(connection)
        except amqp_exc.AMQPError as exc:
            await connection.close()
            raise ConnectionLost(f"setting up the connection failed: {exc}") from exc
        self._ready.set()

    def _on_connection_close(self, _: object, exc: BaseException | None = None) -> None:
        if self._closing:
            return
        self._ready.clear()
        log.warning("broker connection lost (%s); reconnecting", exc or "closed")
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
        async for attempt in retrying:
            with attempt:
                if self._closing:
                    return
                await self._open()
        self.reconnects += 1
        log.info("broker connection restored (%d consumers)", len(self.subscriptions))
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
            if not _dropped(exc):
                raise
            raise ConnectionLost(f"{what}: the connection dropped") from exc

    async def _reopen_channels(self) -> None:
        """A channel error closes the channel: open fresh ones so publishing goes on."""
        if self._connection is None or self._connection.is_closed:
            return
        for channel in self._channels:
            with contextlib.suppress(amqp_exc.AMQPError, RuntimeError):
                await channel.close()
        confirm = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
        fast = await self._connection.channel(publisher_confirms=False)
        self._channels = [confirm, fast]
        self._confirm = await confirm.get_underlay_channel()
        self._fast = await fast.get_underlay_channel()
        if self._reply_handler is not None:
            await self._start_replies(self._reply_handler)

    # -- topology ----------------------------------------------------------------------------

    async def _declare(self, op: str, args: tuple[Any, ...]) -> None:
        channel = self._confirm
        assert channel is not None
        if op == "exchange":
            name, kind, durable = args
            await channel.exchange_declare(name, exchange_type=kind, durable=durable)
        elif op == "queue":
            (qspec,) = args
            await channel.queue_declare(
                qspec.name,
                durable=qspec.durable,
                auto_delete=qspec.auto_delete,
                exclusive=qspec.exclusive,
                arguments=qspec.arguments or None,
            )
        else:
            queue, exchange, key = args
            await channel.queue_bind(queue, exchange, routing_key=key)

    async def _record(self, op: str, *args: Any) -> None:
        await self._wait_ready()
        await self._guard(self._declare(op, args), f"declaring {op} {args[0]!r}")
        if (op, args) not in self._topology:
            self._topology.append((op, args))

    async def declare_exchange(
        self, name: str, kind: ExchangeKind, *, durable: bool = True
    ) -> None:
        await self._record("exchange", name, kind, durable)

    async def declare_queue(self, spec: QueueSpec) -> None:
        await self._record("queue", spec)

    async def bind(self, queue: str, exchange: str, routing_key: str) -> None:
        await self._record("bind", queue, exchange, routing_key)

    async def delete_queue(self, queue: str) -> None:
        await self._wait_ready()
        assert self._confirm is not None
        await self._guard(self._confirm.queue_delete(queue), f"deleting queue {queue!r}")
        self._topology = [
            (op, args)
            for op, args in self._topology
            if not (op == "queue" and args[0].name == queue)
            and not (op == "bind" and args[0] == queue)
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
        await self._guard(
            channel.basic_publish(
                message.body,
                exchange=exchange,
                routing_key=routing_key,
                properties=_properties(message),
                mandatory=mandatory and confirm,
            ),
            f"publishing to {exchange!r} with key {routing_key!r}",
        )

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
            on_delivery(_AmqpDelivery(delivered, channel))

        await channel.basic_consume("amq.rabbitmq.reply-to", callback, no_ack=True)

    async def consume_replies(self, on_delivery: OnDelivery) -> None:
        await self._wait_ready()
        self._reply_handler = on_delivery
        await self._guard(self._start_replies(on_delivery), "consuming direct replies")
