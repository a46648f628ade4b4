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
from quart import Blueprint, Response

from bus.edge._context import edge, endpoint, query
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
    patterns = query(EventsQuery).types.split(",")
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
            while True:
                try:
                    yield await asyncio.wait_for(inbox.get(), keepalive)
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


async def _settle(delivery: Delivery) -> None:
    try:
        await delivery.ack()
    except BusError as exc:
        log.debug("ack on an event stream failed: %s", exc)
