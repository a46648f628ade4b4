"""`GET /v1/events`: the live event stream as server-sent events.

Each client gets its own tap (`Bus.tap`): an exclusive, auto-deleted queue bound to
`govbus.events` by its patterns, deleted when the client goes away; only what came through
`govbus.events` reaches a client. A slow client loses the oldest events (the queue is bounded),
never slows the bus down. Comments keep idle connections alive.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator
from typing import Any

import orjson
from quart import Quart, Response

from bus.errors import BusError
from bus.message import Delivery, event_meta, structured
from bus.tap import Tap
from http_edge._context import Edge, edge
from http_edge.api import Answer, Api
from http_edge.models import EventsQuery
from http_edge.problems import Problem

api = Api("events")

BACKLOG = 1000


@api.get(
    "/v1/events",
    "Server-sent events: each a CloudEvent in structured JSON, filtered by routing patterns",
    scope="events:read",
    query=EventsQuery,
    ok=Answer(str, media="text/event-stream", description="the live event stream"),
    raises=(503,),
    stream=True,
)
async def events(query: EventsQuery) -> Response:
    patterns = [_routing_pattern(p) for p in query.types.split(",")]
    state = edge()
    if state.closing or state.streams >= state.limits.max_streams:
        raise Problem(
            503, "too many event streams are open", slug="busy", headers={"Retry-After": "5"}
        )
    stream = _Stream(state, patterns)
    await stream.open()
    response = Response(
        stream.frames(),
        content_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    response.timeout = None  # a stream lasts as long as its client stays
    return response


class _Stream:
    """One client's subscription: its queue on the bus, its inbox, and the frames it gets."""

    def __init__(self, state: Edge, patterns: list[str]) -> None:
        self.state = state
        self.patterns = patterns
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=BACKLOG + 1)
        self.recent = _Recent()
        self.tap: Tap | None = None

    async def open(self) -> None:
        """Tap the patterns; a broker that does not answer in time is a 503."""
        try:
            async with asyncio.timeout(self.state.limits.rpc_timeout_s):
                self.tap = await self.state.bus.tap(
                    self.patterns,
                    self.on_delivery,
                    prefix="govbus.edge.sse",
                    max_length=BACKLOG,
                    prefetch=BACKLOG,
                )
        except (BusError, TimeoutError) as exc:
            await self.close()
            if isinstance(exc, TimeoutError):
                raise Problem(
                    503,
                    "the bus did not answer",
                    slug="bus-unavailable",
                    headers={"Retry-After": "1"},
                ) from None
            raise
        self.state.inboxes.add(self.inbox)

    def on_delivery(self, delivery: Delivery) -> None:
        if self.recent.seen(delivery.message.message_id):
            return  # delivery is at least once; a client sees each event id once
        frame = _frame(delivery)
        if frame is not None and self.inbox.qsize() < BACKLOG:  # a slow client loses events
            self.inbox.put_nowait(frame)

    async def frames(self) -> AsyncIterator[bytes]:
        keepalive = self.state.limits.keepalive_s
        try:
            yield b": streaming " + ",".join(self.patterns).encode() + b"\n\n"
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow the cancellation
                # that a client's disconnect sends when a frame arrives at the same moment,
                # and the stream would then outlive its client.
                try:
                    async with asyncio.timeout(keepalive):
                        frame = await self.inbox.get()
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if frame is None:
                    yield b": the server is shutting down\n\n"
                    return
                yield frame
        finally:
            await self.close()

    async def close(self) -> None:
        self.state.inboxes.discard(self.inbox)
        if self.tap is not None:
            await self.tap.close()


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
    """End every open event stream, and answer every blocking read as it stands (before a
    graceful shutdown, so none holds it up)."""
    state: Edge = app.extensions["govbus"]
    state.closing = True
    for inbox in state.inboxes:
        inbox.put_nowait(None)
    state.cache.release()
