"""`GET /v1/events`: the live event stream as server-sent events.

Each client gets its own exclusive, auto-deleted queue bound to `govbus.events` by its
patterns; it is deleted when the client goes away. A slow client loses the oldest events
(the queue is bounded), never slows the bus down. Comments keep idle connections alive.
"""

from __future__ import annotations

import asyncio
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
    if state.streams >= state.limits.max_streams:
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
    inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=BACKLOG)
    loop = asyncio.get_running_loop()
    settling: set[asyncio.Task[None]] = set()

    def on_delivery(delivery: Delivery) -> None:
        task = loop.create_task(_settle(delivery))
        settling.add(task)
        task.add_done_callback(settling.discard)
        try:
            meta = event_meta(delivery)
            data: Any = orjson.loads(delivery.message.body)
        except (ValueError, orjson.JSONDecodeError):
            return
        line = orjson.dumps(structured(meta, data))
        frame = b"id: %s\nevent: %s\ndata: %s\n\n" % (meta.id.encode(), meta.type.encode(), line)
        with contextlib.suppress(asyncio.QueueFull):
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
    state.streams += 1
    keepalive = state.limits.keepalive_s

    async def frames() -> AsyncIterator[bytes]:
        try:
            yield b": streaming " + ",".join(patterns).encode() + b"\n\n"
            while not state.closing.is_set():
                try:
                    yield await asyncio.wait_for(_next(inbox, state.closing), keepalive)
                except TimeoutError:
                    yield b": keep-alive\n\n"
        finally:
            state.streams -= 1
            with contextlib.suppress(BusError):
                await subscription.close()
                await transport.delete_queue(spec.name)

    response = Response(
        frames(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a stream lasts as long as its client stays
    return response


def _routing_pattern(pattern: str) -> str:
    """`registry.*` means every registry event, as SPEC writes it: a trailing `*` matches the
    rest of the type (AMQP's `#`, which a URL can only carry as `%23`)."""
    if pattern == "*" or pattern.endswith(".*"):
        return pattern[:-1] + "#"
    return pattern


async def _next(inbox: asyncio.Queue[bytes], closing: asyncio.Event) -> bytes:
    """The next frame, or a goodbye comment once the edge is shutting down."""
    getting = asyncio.ensure_future(inbox.get())
    closed = asyncio.ensure_future(closing.wait())
    try:
        await asyncio.wait((getting, closed), return_when=asyncio.FIRST_COMPLETED)
    finally:
        closed.cancel()
        if not getting.done():
            getting.cancel()
    if getting.done() and not getting.cancelled():
        return getting.result()
    return b": the server is shutting down\n\n"


def close_streams(app: Quart) -> None:
    """End every open event stream (before a graceful shutdown, so none holds it up)."""
    state: Edge = app.extensions["govbus"]
    state.closing.set()


async def _settle(delivery: Delivery) -> None:
    try:
        await delivery.ack()
    except BusError as exc:
        log.debug("ack on an event stream failed: %s", exc)
