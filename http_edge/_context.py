"""What every route shares: the edge's state, the `endpoint` decorator, bus calls and parsing."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, get_origin

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from quart import Response, current_app, g, request

from bus.client import Bus
from bus.errors import BusError, RpcError
from http_edge.auth import Authenticator, AuthError, AuthUnavailable
from http_edge.metrics import EdgeMetrics
from http_edge.problems import Problem, from_validation_error

P = ParamSpec("P")
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

JSON = "application/json"
_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(slots=True)
class Limits:
    """The edge's bounds on work per request."""

    request_timeout_s: float = 10.0
    rpc_timeout_s: float = 5.0
    max_body_bytes: int = 1024 * 1024
    keepalive_s: float = 15.0
    max_streams: int = 256


@dataclass(slots=True)
class Edge:
    """The state one edge app holds: its bus, authenticator, limits and metrics."""

    bus: Bus
    auth: Authenticator
    limits: Limits
    metrics: EdgeMetrics
    owns_bus: bool = False
    # The inbox of every open event stream; `None` in one ends it (shutdown).
    inboxes: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    closing: bool = False

    @property
    def streams(self) -> int:
        return len(self.inboxes)


def edge() -> Edge:
    state: Edge = current_app.extensions["govbus"]
    return state


def endpoint(
    scope: str | None = None, *, stream: bool = False
) -> Callable[[Callable[P, Awaitable[Response]]], Callable[P, Awaitable[Response]]]:
    """Wrap a view: bearer-token check for `scope` (None: public), trace context, and the
    request timeout (504 past it; streams are exempt)."""

    def decorate(view: Callable[P, Awaitable[Response]]) -> Callable[P, Awaitable[Response]]:
        @functools.wraps(view)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
            state = edge()
            if scope is not None:
                try:
                    granted = await state.auth.scopes(request.headers.get("Authorization"))
                except AuthUnavailable as exc:
                    retry = str(max(1, math.ceil(exc.retry_after)))
                    raise Problem(
                        503, str(exc), slug="auth-unavailable", headers={"Retry-After": retry}
                    ) from None
                except AuthError as exc:
                    # RFC 6750: a request without credentials gets the bare challenge.
                    challenge = (
                        _challenge("invalid_token", str(exc))
                        if "Authorization" in request.headers
                        else 'Bearer realm="govbus"'
                    )
                    raise Problem(
                        401, str(exc), slug="unauthorized", headers={"WWW-Authenticate": challenge}
                    ) from None
                if scope not in granted:
                    raise Problem(
                        403,
                        f"the token lacks scope {scope!r}",
                        slug="forbidden",
                        headers={"WWW-Authenticate": _challenge("insufficient_scope", scope)},
                    )
            g.traceparent = _traceparent(request.headers.get("traceparent"))
            g.deadline = time.monotonic() + state.limits.request_timeout_s
            if stream:
                return await view(*args, **kwargs)
            try:
                async with asyncio.timeout(state.limits.request_timeout_s):
                    return await view(*args, **kwargs)
            except TimeoutError:
                raise Problem(
                    504,
                    f"no answer within {state.limits.request_timeout_s:g} s",
                    slug="timeout",
                ) from None

        return wrapper

    return decorate


def _challenge(error: str, description: str) -> str:
    description = "".join(c for c in description if c.isprintable()).replace('"', "'")
    return f'Bearer realm="govbus", error="{error}", error_description="{description}"'


def _traceparent(header: str | None) -> str:
    """The caller's W3C trace context with a new span id, or a new trace if it had none."""
    if header:
        match = _TRACEPARENT.fullmatch(header.strip().lower())
        if match and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}:
            return f"00-{match.group(1)}-{os.urandom(8).hex()}-{match.group(3)}"
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


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


async def json_body(adapter: TypeAdapter[T] | type[T], *, optional: bool = False) -> T:
    """The request body validated: 415 if it is not JSON, 400 if malformed, 422 naming fields.

    With `optional`, an empty body without a content type counts as `{}`.
    """
    mimetype = request.mimetype
    if optional and not mimetype and not await request.get_data(as_text=False):
        return _validate(adapter, {})
    if mimetype != JSON and not (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    ):
        raise Problem(415, "the body must be application/json", slug="unsupported-media-type")
    raw = await request.get_data(as_text=False)
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise Problem(400, f"the body is not valid JSON: {exc}", slug="malformed-json") from None
    if not isinstance(data, dict):
        raise Problem(
            422,
            "the body must be a JSON object",
            slug="invalid",
            errors=[{"field": "body", "message": "must be an object"}],
        )
    return _validate(adapter, data)


def _validate(adapter: TypeAdapter[T] | type[T], data: dict[str, Any]) -> T:
    try:
        if isinstance(adapter, TypeAdapter):
            return adapter.validate_python(data)
        return TypeAdapter(adapter).validate_python(data)
    except ValidationError as exc:
        raise from_validation_error(exc, where="body") from None


def query(model: type[M], extra: Mapping[str, Any] | None = None) -> M:
    """The query string validated by `model`; repeated keys become lists where it wants one."""
    data: dict[str, Any] = {}
    for key in request.args:
        values = request.args.getlist(key)
        field = model.model_fields.get(key)
        wants_list = field is not None and get_origin(field.annotation) is list
        data[key] = values if wants_list else values[-1]
    data.update(extra or {})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise from_validation_error(exc, where="query") from None


def path_param(adapter: TypeAdapter[str], name: str, value: str) -> str:
    """A path parameter validated (names with `#`, `*`, too long ... are 422 here)."""
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        message = exc.errors(include_url=False)[0]["msg"]
        raise Problem(
            422,
            f"path.{name}: {message}",
            slug="invalid",
            errors=[{"field": f"path.{name}", "message": message}],
        ) from None
