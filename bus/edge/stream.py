"""`GET /v1/events`: the live event stream as server-sent events.

Each client gets its own exclusive, auto-deleted queue bound to `govbus.events` by its
patterns; it is deleted when the client goes away. A slow client loses the oldest events
(the queue is bounded), never slows the bus down. Comments keep idle connections alive.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from quart import Blueprint, Quart, Response

from bus.edge._context import Edge, edge, endpoint, query
from bus.edge.models import EventsQuery
from bus.edge.problems import Problem
from bus.errors import BusError
from bus.message import Delivery, event_meta, structured
from bus.topology import EVENTS
from bus.transport import QueueSpec

log = logging.getLogger(__name__)
blueprint = Blueprint("stream", __name__)

BACKLOG = 1000


@blueprint.get("/v1/events")
@endpoint("events:read", stream=True)
async def events() -> Response:
    patterns = [_routing_pattern(p) for p in query(EventsQuery).types.split(",")]
    state = edge()
    if state.closing or state.streams >= state.limits.max_streams:
        raise Problem(
            503, "too many event streams are open", slug="busy", headers={"Retry-After": "5"}
        )
    transport = state.bus.transport
    spec = QueueSpec(
        f"govbus.edge.sse.{uuid.uuid4().hex[:16]}",
        durable=False,
        exclusive=True,
        auto_delete=True,
        arguments={"x-max-length": BACKLOG, "x-overflow": "drop-head"},
    )
    inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=BACKLOG + 1)
    loop = asyncio.get_running_loop()
    settling: set[asyncio.Task[None]] = set()

    recent = _Recent()

    def on_delivery(delivery: Delivery) -> None:
        task = loop.create_task(_settle(delivery))
        settling.add(task)
        task.add_done_callback(settling.discard)
        if recent.seen(delivery.message.message_id):
            return  # delivery is at least once; a client sees each event id once
        frame = _frame(delivery)
        if frame is not None and inbox.qsize() < BACKLOG:  # a slow client loses events
            inbox.put_nowait(frame)

    try:
        await transport.declare_queue(spec)
        for pattern in patterns:
            await transport.bind(spec.name, EVENTS, pattern)
        subscription = await transport.consume(spec.name, on_delivery, prefetch=BACKLOG)
    except BusError:
        with contextlib.suppress(BusError):
            await transport.delete_queue(spec.name)
        raise
    state.inboxes.add(inbox)
    keepalive = state.limits.keepalive_s

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b": streaming " + ",".join(patterns).encode() + b"\n\n"
            while True:
                try:
                    frame = await asyncio.wait_for(inbox.get(), keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if frame is None:
                    yield b": the server is shutting down\n\n"
                    return
                yield frame
        finally:
            state.inboxes.discard(inbox)
            with contextlib.suppress(BusError):
                await subscription.close()
            with contextlib.suppress(BusError):  # also forgets it: not re-declared on reconnect
                await transport.delete_queue(spec.name)

    response = Response(
        frames(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a stream lasts as long as its client stays
    return response


class _Recent:
    """The last `size` event ids a stream sent."""

    def __init__(self, size: int = 4096) -> None:
        self.order: collections.deque[str] = collections.deque()
        self.ids: set[str] = set()
        self.size = size

    def seen(self, event_id: str | None) -> bool:
        if event_id is None:
            return False
        if event_id in self.ids:
            return True
        self.ids.add(event_id)
        self.order.append(event_id)
        if len(self.order) > self.size:
            self.ids.discard(self.order.popleft())
        return False


def _frame(delivery: Delivery) -> bytes | None:
    """One server-sent event: the CloudEvent in structured JSON (None if undecodable)."""
    try:
        meta = event_meta(delivery)
        data: Any = orjson.loads(delivery.message.body)
    except (ValueError, orjson.JSONDecodeError):
        return None
    line = orjson.dumps(structured(meta, data))
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (meta.id.encode(), meta.type.encode(), line)


def _routing_pattern(pattern: str) -> str:
    """`registry.*` means every registry event, as SPEC writes it: a trailing `*` matches the
    rest of the type (AMQP's `#`, which a URL can only carry as `%23`)."""
    if pattern == "*" or pattern.endswith(".*"):
        return pattern[:-1] + "#"
    return pattern


def close_streams(app: Quart) -> None:
    """End every open event stream (before a graceful shutdown, so none holds it up)."""
    state: Edge = app.extensions["govbus"]
    state.closing = True
    for inbox in state.inboxes:
        inbox.put_nowait(None)


async def _settle(delivery: Delivery) -> None:
    try:
        await delivery.ack()
    except BusError as exc:
        log.debug("ack on an event stream failed: %s", exc)
