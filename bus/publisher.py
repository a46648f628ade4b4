"""Publishing events: CloudEvents binary mode, persistent, confirmed, mandatory."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic_core import to_json

from bus.clock import Clock, WallClock
from bus.message import event_message
from bus.topology import EVENTS
from bus.transport.base import Transport


def new_id() -> str:
    return str(uuid.uuid4())


def event_type_of(event: BaseModel) -> str:
    event_type = getattr(event, "TYPE", None)
    if not isinstance(event_type, str):
        raise TypeError(f"{type(event).__name__} has no TYPE: it is not an event model")
    return event_type


class Publisher:
    """Publishes events to `govbus.events` with the event type as routing key.

    `publish` returns once the broker confirmed the message; concurrent calls share the
    channel, so confirms pipeline instead of costing one round trip each.
    """

    def __init__(self, transport: Transport, *, source: str, clock: Clock | None = None) -> None:
        self.transport = transport
        self.source = source
        self.clock: Clock = clock or WallClock()
        self.published = 0

    async def publish(
        self,
        event: BaseModel,
        *,
        event_id: str | None = None,
        time: datetime | None = None,
        traceparent: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish a typed event; returns its id. Raises `Unroutable` if no queue takes it."""
        return await self.publish_raw(
            event_type_of(event),
            to_json(event),
            event_id=event_id,
            time=time,
            traceparent=traceparent,
            correlation_id=correlation_id,
        )

    async def publish_raw(
        self,
        event_type: str,
        data: bytes | dict[str, Any],
        *,
        event_id: str | None = None,
        time: datetime | None = None,
        source: str | None = None,
        traceparent: str | None = None,
        correlation_id: str | None = None,
    ) -> str:
        """Publish an already-encoded payload (the log replayer and bridges use this)."""
        body = data if isinstance(data, bytes) else orjson.dumps(data)
        event_id = event_id or new_id()
        message = event_message(
            event_type=event_type,
            body=body,
            event_id=event_id,
            source=source or self.source,
            time=time or self.clock.now(),
            traceparent=traceparent,
            correlation_id=correlation_id,
        )
        await self.transport.publish(EVENTS, event_type, message)
        self.published += 1
        return event_id
