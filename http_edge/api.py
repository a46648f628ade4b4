"""One declaration per route: what it takes and what it answers, to validate and to document.

A route module declares its views on an `Api`, which owns their blueprint:

    api = Api("registry")

    @api.get("/v1/services/<name>", "The instances of one service", scope="registry:read",
             path={"name": ServiceName}, query=ServiceQuery, ok=Answer(ServiceView),
             raises=(404,), bus=True)
    async def service(name: str, query: ServiceQuery) -> Response: ...

Before the view runs, its wrapper checks the bearer token for `scope`, then validates the path
parameters, the query string, the declared headers and the JSON body with the declared types,
and calls the view with the validated values (`query=`, `body=`, a header by its snake_case
name). `openapi.py` writes `/openapi.json` from the same declarations, with the statuses each
part can answer: what the document says a route takes is what the route accepts.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_origin

import orjson
from pydantic import BaseModel, TypeAdapter, ValidationError
from quart import Blueprint, Response, g, request

from http_edge._context import JSON, Edge, edge
from http_edge.auth import SESSION_COOKIE, AuthError, AuthUnavailable
from http_edge.problems import Problem, from_validation_error

View = Callable[..., Awaitable[Response]]

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


@dataclass(frozen=True, slots=True)
class Answer:
    """A route's success answer: status, body type (None: no body) and media type."""

    body: Any = None
    status: int = 200
    description: str = "ok"
    media: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)
    """Response headers it sets: name -> what it means."""


@dataclass(frozen=True, slots=True)
class Route:
    """One declared route: method, Quart rule and everything its wrapper validates."""

    method: str
    rule: str
    summary: str
    operation: str
    group: str
    scope: str | tuple[str, ...] | None
    """The scope a token needs, or several it needs all of."""
    ok: Answer
    path: Mapping[str, TypeAdapter[Any]]
    query: type[BaseModel] | None
    headers: Mapping[str, TypeAdapter[Any]]
    body: TypeAdapter[Any] | None
    body_type: Any
    body_required: bool
    any_media: bool
    raises: frozenset[int]
    bus: bool
    stream: bool
    acl: bool = False
    """Consul's ACL answers: a missing or bad token is a 403 ("ACL not found"), not a 401."""

    def errors(self) -> list[int]:
        """Every error status this route can answer, from what it declares."""
        found = set(self.raises)
        if self.scope is not None:
            # 503: an OpenID provider's keys are out of reach
            found |= {403, 503} if self.acl else {401, 403, 503}
        if self.path or self.query is not None:
            found.add(422)
        if self.headers:
            found.add(400)
        if self.body is not None:
            found |= {400, 413, 415, 422}
        if self.bus:
            found |= {502, 503, 504}
        return sorted(found)


class Api:
    """The routes of one blueprint, declared once for validation and documentation."""

    def __init__(self, name: str, *, acl: bool = False) -> None:
        """`acl`: its routes answer as Consul's do for a missing or bad token (403)."""
        self.name = name
        self.acl = acl
        self.blueprint = Blueprint(name, __name__)
        self.routes: list[Route] = []

    def route(
        self,
        method: str,
        rule: str,
        summary: str,
        *,
        scope: str | tuple[str, ...] | None = None,
        ok: Answer | None = None,
        path: Mapping[str, Any] | None = None,
        query: type[BaseModel] | None = None,
        headers: Mapping[str, Any] | None = None,
        body: Any = None,
        body_required: bool = True,
        any_media: bool = False,
        raises: Iterable[int] = (),
        bus: bool = False,
        stream: bool = False,
    ) -> Callable[[View], View]:
        """Declare `view` for `method rule`; see the module docstring. `bus`: it asks the bus
        (502/503/504 possible); `stream`: the answer streams (no request timeout); `any_media`:
        the body is JSON whatever its `Content-Type` says (Consul's clients send none)."""

        if query is not None and query.model_config.get("frozen") is not True:
            # One instance of it serves every request without a query string (`_no_query`).
            raise TypeError(f"{rule}: the query model {query.__name__} must be frozen")

        def declare(view: View) -> View:
            operation = view.__name__
            taken = {r.operation for r in self.routes}
            if operation in taken:
                operation = f"{operation}_{len(taken)}"
            declared = Route(
                method=method,
                rule=rule,
                summary=summary,
                operation=operation,
                group=self.name,
                scope=scope,
                ok=ok or Answer(),
                path={name: TypeAdapter(t) for name, t in (path or {}).items()},
                query=query,
                headers={name: TypeAdapter(t) for name, t in (headers or {}).items()},
                body=None if body is None else TypeAdapter(body),
                body_type=body,
                body_required=body_required,
                any_media=any_media,
                raises=frozenset(raises),
                bus=bus,
                stream=stream,
                acl=self.acl,
            )
            self.routes.append(declared)
            self.blueprint.add_url_rule(rule, operation, _wrap(declared, view), methods=[method])
            return view  # undecorated, so one view can take several rules

        return declare

    def get(self, rule: str, summary: str, **declared: Any) -> Callable[[View], View]:
        return self.route("GET", rule, summary, **declared)

    def post(self, rule: str, summary: str, **declared: Any) -> Callable[[View], View]:
        return self.route("POST", rule, summary, **declared)

    def put(self, rule: str, summary: str, **declared: Any) -> Callable[[View], View]:
        return self.route("PUT", rule, summary, **declared)

    def patch(self, rule: str, summary: str, **declared: Any) -> Callable[[View], View]:
        return self.route("PATCH", rule, summary, **declared)

    def delete(self, rule: str, summary: str, **declared: Any) -> Callable[[View], View]:
        return self.route("DELETE", rule, summary, **declared)


def _wrap(declared: Route, view: View) -> View:
    """The view behind its token check, trace context, request timeout (504 past it; streams
    are exempt) and input validation."""

    @functools.wraps(view)
    async def handle(**path: str) -> Response:
        state = edge()
        if declared.scope is not None:
            await _authorize(state, declared.scope, acl=declared.acl)
        g.traceparent = _traceparent(request.headers.get("traceparent"))
        budget = state.limits.request_timeout_s
        g.deadline = time.monotonic() + budget
        if declared.stream:
            return await view(**await _inputs(declared, path))
        try:
            async with asyncio.timeout(budget) as timer:
                inputs = await _inputs(declared, path)
                blocking = _blocking_s(inputs.get("query"))
                if blocking:
                    # A blocking read may take its whole wait (and its jitter) first.
                    budget += blocking
                    timer.reschedule((timer.when() or 0.0) + blocking)
                    g.deadline += blocking
                return await view(**inputs)
        except TimeoutError:
            raise Problem(504, f"no answer within {budget:g} s", slug="timeout") from None

    return handle


def _blocking_s(query: Any) -> float:
    """How long a read's query may block (`?index=N&wait=…`: its wait, jittered), else 0."""
    if getattr(query, "index", None) is None:
        return 0.0
    wait = getattr(query, "wait", 0.0)
    return float(wait) * 17 / 16 if isinstance(wait, int | float) else 0.0


def _authorization() -> str | None:
    """The request's `Authorization`; else Consul's `X-Consul-Token` as a bearer token; else,
    on a read, the dashboard's session cookie as one.

    The cookie only on reads: a cookie goes with every request the browser makes to the edge,
    so it never authorises a change (and `SameSite=Strict` keeps other sites' pages from
    sending it)."""
    header = request.headers.get("Authorization")
    if header is not None:
        return header
    consul = request.headers.get("X-Consul-Token")
    if consul:
        return f"Bearer {consul}"
    if request.method in ("GET", "HEAD"):
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            return f"Bearer {cookie}"
    return None


async def _authorize(state: Edge, scope: str | tuple[str, ...], *, acl: bool = False) -> None:
    try:
        granted = await state.auth.scopes(_authorization())
    except AuthUnavailable as exc:
        retry = str(max(1, math.ceil(exc.retry_after)))
        raise Problem(
            503, str(exc), slug="auth-unavailable", headers={"Retry-After": retry}
        ) from None
    except AuthError as exc:
        if acl:  # Consul: no token, or one it does not know, is "ACL not found" (403)
            raise Problem(403, f"ACL not found: {exc}", slug="forbidden") from None
        # RFC 6750: a request without credentials gets the bare challenge.
        challenge = (
            _challenge("invalid_token", str(exc))
            if "Authorization" in request.headers
            else 'Bearer realm="govbus"'
        )
        raise Problem(
            401, str(exc), slug="unauthorized", headers={"WWW-Authenticate": challenge}
        ) from None
    for needed in (scope,) if isinstance(scope, str) else scope:
        if needed not in granted:
            raise Problem(
                403,
                f"Permission denied: the token lacks scope {needed!r}"
                if acl
                else f"the token lacks scope {needed!r}",
                slug="forbidden",
                headers={"WWW-Authenticate": _challenge("insufficient_scope", needed)},
            )


def _challenge(error: str, description: str) -> str:
    description = "".join(c for c in description if c.isprintable()).replace('"', "'")
    return f'Bearer realm="govbus", error="{error}", error_description="{description}"'


def _traceparent(header: str | None) -> str:
    """The caller's W3C trace context with a new span id, or a new trace if it had none."""
    if header:
        match = _TRACEPARENT.fullmatch(header.strip().lower())
        if match and set(match.group(1)) != {"0"} and set(match.group(2)) != {"0"}:
            return f"00-{match.group(1)}-{_random_hex(64)}-{match.group(3)}"
    return f"00-{_random_hex(128)}-{_random_hex(64)}-01"


def _random_hex(bits: int) -> str:
    # Trace ids need to be unique, not secret: no system call per request (os.urandom is one).
    return f"{random.getrandbits(bits) or 1:0{bits // 4}x}"


# --- inputs, in the order a client would fix them: path, query, headers, body -------------------


async def _inputs(declared: Route, path: Mapping[str, str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, adapter in declared.path.items():
        values[name] = _validate(adapter, path[name], where=f"path.{name}")
    if declared.query is not None:
        values["query"] = _query(declared.query)
    for name, adapter in declared.headers.items():
        values[name.lower().replace("-", "_")] = _header(adapter, name)
    if declared.body is not None:
        values["body"] = await _body(
            declared.body, optional=not declared.body_required, any_media=declared.any_media
        )
    return values


def _validate(adapter: TypeAdapter[Any], value: Any, *, where: str) -> Any:
    try:
        return adapter.validate_python(value)
    except ValidationError as exc:
        raise from_validation_error(exc, where=where) from None


# The model of an empty query string, by model: they are frozen, so one serves every request.
_EMPTY_QUERY: dict[type[BaseModel], BaseModel] = {}


def _query(model: type[BaseModel]) -> BaseModel:
    """The query string; a repeated key becomes a list where the model wants one."""
    if not request.args:
        empty = _EMPTY_QUERY.get(model)
        if empty is not None:
            return empty
    data: dict[str, Any] = {}
    aliases = {f.alias: f for f in model.model_fields.values() if f.alias}
    for key in request.args:
        values = request.args.getlist(key)
        declared = aliases.get(key) or model.model_fields.get(key)
        wants_list = declared is not None and get_origin(declared.annotation) is list
        data[key] = values if wants_list else values[-1]
    try:
        query = model.model_validate(data)
    except ValidationError as exc:  # e.g. a required parameter missing
        raise from_validation_error(exc, where="query") from None
    if not data:
        _EMPTY_QUERY[model] = query
    return query


def _header(adapter: TypeAdapter[Any], name: str) -> Any:
    """A declared header (None when absent); a malformed one is a 400 naming it."""
    raw = request.headers.get(name)
    if raw is None:
        return None
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        invalid = from_validation_error(exc, where=f"header.{name}")
        raise Problem(400, invalid.detail, slug="bad-header", errors=invalid.errors) from None


async def _body(adapter: TypeAdapter[Any], *, optional: bool, any_media: bool = False) -> Any:
    """The JSON body: 415 if it is not JSON, 400 if malformed, 422 naming fields.

    With `optional`, an empty body without a content type counts as `{}`; with `any_media`,
    the body is read as JSON whatever its content type says (clients that send none).
    """
    mimetype = request.mimetype
    if optional and not mimetype and not await request.get_data(as_text=False):
        return _validate(adapter, {}, where="body")
    if (
        not any_media
        and mimetype != JSON
        and not (mimetype.startswith("application/") and mimetype.endswith("+json"))
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
    return _validate(adapter, data, where="body")
