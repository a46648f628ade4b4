"""AMQP messages both ways: `Message` to basic properties, a delivered frame to a `Delivery`
settled on the raw aiormq channel it came on (the hot path: one properties object, no wrapper)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import aiormq
import aiormq.exceptions as amqp_exc
from pamqp import commands as spec

from bus.errors import ConnectionLost
from bus.message import Delivery, Message
from bus.transport._amqp_properties import FastProperties


def properties(message: Message) -> spec.Basic.Properties:
    return FastProperties(
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


def to_message(delivered: aiormq.abc.DeliveredMessage) -> Message:
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


def dropped(exc: asyncio.CancelledError) -> bool:
    """True when aiormq cancelled our operation because the connection died (it passes its
    reader task's cancellation on to every pending future), False when the caller's own task
    is being cancelled. The first is a `ConnectionLost`: let it through as a cancellation and
    the caller's task ends as if cancelled (a publisher stops publishing, a consumer stops
    consuming while the broker still counts it)."""
    task = asyncio.current_task()
    return task is None or not task.cancelling()


class AmqpDelivery(Delivery):
    __slots__ = ("_channel", "_tag")

    def __init__(
        self, delivered: aiormq.abc.DeliveredMessage, channel: aiormq.abc.AbstractChannel
    ) -> None:
        frame = delivered.delivery
        assert isinstance(frame, spec.Basic.Deliver | spec.Basic.Return)
        message = to_message(delivered)
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
            if not dropped(exc):
                raise
            raise ConnectionLost(f"{what} failed, the message will be redelivered") from exc
