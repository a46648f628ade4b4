"""Messages as the transports carry them, and their CloudEvents 1.0 meaning.

A `Message` is the AMQP view (body, properties, headers) shared by both transports. An event
travels in CloudEvents *binary mode*: the body is the JSON payload and the event attributes
are AMQP properties and `ce-*` headers, so any AMQP client in any language can read it.

AMQP 0-9-1's `timestamp` property is whole seconds since the epoch: an event's `timestamp` is
its time truncated to the second (`amqp_timestamp`), and header `ce-time` carries the full
precision (RFC 3339, microseconds). Both transports deliver the same: the embedded one
truncates a finer timestamp as RabbitMQ's wire encoding does.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
JSON = "application/json"


@dataclass(slots=True)
class Message:
    """One AMQP message: body plus the properties govbus uses."""

    body: bytes
    message_id: str | None = None
    type: str | None = None
    timestamp: datetime | None = None
    app_id: str | None = None
    content_type: str | None = JSON
    correlation_id: str | None = None
    reply_to: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    expiration_ms: int | None = None
    persistent: bool = True


class Delivery(abc.ABC):
    """A message handed to a consumer, to be settled exactly once by the consumer policy."""

    __slots__ = ("delivery_count", "exchange", "message", "redelivered", "routing_key")

    def __init__(
        self,
        message: Message,
        *,
        exchange: str,
        routing_key: str,
        redelivered: bool,
        delivery_count: int,
    ) -> None:
        self.message = message
        self.exchange = exchange
        self.routing_key = routing_key
        self.redelivered = redelivered
        # Failed deliveries before this one (quorum queues' `x-delivery-count`).
        self.delivery_count = delivery_count

    @abc.abstractmethod
    async def ack(self) -> None:
        """The message is done with: the broker forgets it."""

    @abc.abstractmethod
    async def nack(self, *, requeue: bool) -> None:
        """Give the message back (requeue) or dead-letter it through the queue's DLX."""


@dataclass(frozen=True, slots=True)
class EventMeta:
    """The CloudEvents attributes of a consumed event, next to its typed payload."""

    id: str
    type: str
    source: str
    time: datetime
    traceparent: str | None = None
    correlation_id: str | None = None
    redelivered: bool = False
    delivery_count: int = 0


def amqp_timestamp(moment: datetime) -> datetime:
    """`moment` as the AMQP `timestamp` property carries it: whole seconds, in UTC (a naive
    time is taken as UTC), truncated as pamqp encodes it for RabbitMQ."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return datetime.fromtimestamp(int(moment.timestamp()), UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a `Z`, the form every log line uses."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time; naive times are taken as UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_moment(text: str) -> datetime:
    """A moment a user gave (`--until`, `?at=`): an RFC 3339 date and time with its offset
    (`2026-01-01T12:00:00Z`, `…+02:00`). Raises ValueError saying what is wrong; unlike
    `parse_time` (for what the bus carries), a time without an offset is refused, since it
    would silently mean UTC to us and local time to the user."""
    # RFC 3339 allows a lowercase t and z; Python wants them upper.
    upper = text.strip().upper()
    wrong = f"not an RFC 3339 date and time (e.g. 2026-01-01T12:00:00Z): {text!r}"
    if "T" not in upper and " " not in upper:
        raise ValueError(wrong)
    try:
        moment = datetime.fromisoformat(upper)
    except ValueError:
        raise ValueError(wrong) from None
    if moment.tzinfo is None:
        raise ValueError(f"no UTC offset (add Z or +HH:MM): {text!r}")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before year 1 in UTC
        raise ValueError(f"out of range (years 1 to 9999 in UTC): {text!r}") from None


def event_message(
    *,
    event_type: str,
    body: bytes,
    event_id: str,
    source: str,
    time: datetime,
    traceparent: str | None = None,
    correlation_id: str | None = None,
) -> Message:
    """Build the binary-mode CloudEvent for an event payload already encoded as JSON."""
    headers: dict[str, Any] = {
        "ce-specversion": SPECVERSION,
        "ce-time": format_time(time),
        "ce-source": source,
    }
    if traceparent:
        headers["traceparent"] = traceparent
    return Message(
        body=body,
        message_id=event_id,
        type=event_type,
        timestamp=amqp_timestamp(time),
        app_id=source,
        correlation_id=correlation_id,
        headers=headers,
    )


def event_meta(delivery: Delivery) -> EventMeta:
    """Read the CloudEvents attributes of a delivery; raises ValueError when one is missing."""
    msg = delivery.message
    headers = msg.headers
    if not msg.message_id:
        raise ValueError("message_id (the event id) is missing")
    event_type = msg.type or delivery.routing_key
    raw_time = headers.get("ce-time")
    if isinstance(raw_time, bytes):
        raw_time = raw_time.decode()
    if isinstance(raw_time, str):
        try:
            time = parse_time(raw_time)
        except ValueError as exc:
            raise ValueError(f"header ce-time is not an RFC 3339 time: {raw_time!r}") from exc
    elif msg.timestamp is not None:
        time = msg.timestamp if msg.timestamp.tzinfo else msg.timestamp.replace(tzinfo=UTC)
    else:
        raise ValueError("the event time (header ce-time or the timestamp property) is missing")
    source = headers.get("ce-source") or msg.app_id or "unknown"
    traceparent = headers.get("traceparent")
    return EventMeta(
        id=msg.message_id,
        type=event_type,
        source=source.decode() if isinstance(source, bytes) else str(source),
        time=time,
        traceparent=traceparent.decode() if isinstance(traceparent, bytes) else traceparent,
        correlation_id=msg.correlation_id,
        redelivered=delivery.redelivered,
        delivery_count=delivery.delivery_count,
    )


def structured(meta: EventMeta, data: Any) -> dict[str, Any]:
    """The CloudEvents structured JSON form of an event (one line of an event log)."""
    event: dict[str, Any] = {
        "specversion": SPECVERSION,
        "id": meta.id,
        "type": meta.type,
        "source": meta.source,
        "time": format_time(meta.time),
        "datacontenttype": JSON,
        "data": data,
    }
    if meta.traceparent:
        event["traceparent"] = meta.traceparent
    return event
