"""What every route shares: the edge's state, bus calls and JSON answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import orjson
from pydantic import BaseModel
from quart import Response, current_app, g

from bus.client import Bus
from bus.errors import BusError, RpcError
from http_edge.auth import Authenticator
from http_edge.cache import RegistryCache
from http_edge.metrics import EdgeMetrics

if TYPE_CHECKING:
    from http_edge.api import Route
    from http_edge.history import HistorySource

M = TypeVar("M", bound=BaseModel)

JSON = "application/json"


@dataclass(slots=True)
class Limits:
    """The edge's bounds on work per request."""

    request_timeout_s: float = 10.0
    rpc_timeout_s: float = 5.0
    max_body_bytes: int = 1024 * 1024
    keepalive_s: float = 15.0
    max_streams: int = 256
    cache_max_age_s: float = 1.0
    """How old a cached registry answer may get without an event (heartbeat times)."""


@dataclass(slots=True)
class Edge:
    """The state one edge app holds: its bus, authenticator, limits and metrics."""

    bus: Bus
    auth: Authenticator
    limits: Limits
    metrics: EdgeMetrics
    cache: RegistryCache
    """Registry answers kept fresh by events; the blocking reads wait on it."""
    owns_bus: bool = False
    history: HistorySource | None = None
    """What answers `/v1/history` (none: the edge keeps no history, 404)."""
    datacenter: str = "dc1"
    """The Consul datacenter the edge answers as (`GOVBUS_DATACENTER`)."""
    node_name: str = "govbus"
    """The node name `/v1/agent/self` gives (the edge's host name)."""
    # The inbox of every open event stream; `None` in one ends it (shutdown).
    inboxes: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    closing: bool = False
    # What the app serves, as declared (`http_edge.api`): `/openapi.json` is written from it.
    routes: list[Route] = field(default_factory=list)
    # `/openapi.json` and `/asyncapi.json`, encoded once (the routes do not change).
    documents: dict[str, bytes] = field(default_factory=dict)

    @property
    def streams(self) -> int:
        return len(self.inboxes)


def edge() -> Edge:
    state: Edge = current_app.extensions["govbus"]
    return state


async def call(method: str, params: BaseModel | Mapping[str, Any], reply: type[M]) -> M:
    """Request/reply on the bus within what is left of the request's time budget."""
    state = edge()
    remaining = getattr(g, "deadline", time.monotonic() + state.limits.rpc_timeout_s)
    timeout = max(0.05, min(state.limits.rpc_timeout_s, remaining - time.monotonic() - 0.05))
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await state.bus.rpc.call(
            method,
            params,
            reply=reply,
            timeout=timeout,
            headers={"traceparent": g.traceparent},
        )
    except RpcError as exc:
        outcome = exc.code
        raise
    except BusError:
        outcome = "bus_error"
        raise
    finally:
        state.metrics.rpc_latency.labels(method, outcome).observe(time.perf_counter() - started)


async def publish(event: BaseModel) -> str:
    """Publish an event (confirmed, mandatory) carrying the request's trace context."""
    return await edge().bus.publish(event, traceparent=g.traceparent)


def json_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    body = data.model_dump_json().encode() if isinstance(data, BaseModel) else orjson.dumps(data)
    return Response(body, status=status, headers=dict(headers or {}), content_type=JSON)
