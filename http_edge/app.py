"""The edge's composition root: `create_app(bus=..., settings=...)`."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Sequence

from quart import Quart, Response, g, request
from quart_cors import cors
from werkzeug.exceptions import HTTPException

from bus.client import Bus
from bus.errors import BusError
from bus.settings import Settings, load_settings
from http_edge import consul, consul_read, dashboard, ops, registry, resources, stream
from http_edge import history as history_routes
from http_edge._context import Edge, Limits
from http_edge.auth import Authenticator
from http_edge.cache import RegistryCache
from http_edge.dns import serve_dns
from http_edge.history import HistorySource
from http_edge.metrics import EdgeMetrics
from http_edge.problems import Problem, from_bus_error

log = logging.getLogger(__name__)

# What a browser page on a listed origin may send, and read back beyond the simple headers.
CORS_ALLOW_HEADERS = ("authorization", "content-type", "if-match", "traceparent")
CORS_ALLOW_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
CORS_EXPOSE_HEADERS = (
    "ETag",
    "Location",
    "Retry-After",
    "WWW-Authenticate",
    "X-Govbus-Index",
    "X-Govbus-Protection",
)
CORS_MAX_AGE_S = 600


def create_app(
    *,
    bus: Bus | None = None,
    settings: Settings | None = None,
    auth: Authenticator | None = None,
    limits: Limits | None = None,
    observe: Sequence[Bus] = (),
    history: HistorySource | None = None,
    dns: str | None = None,
) -> Quart:
    """The edge as a Quart app.

    With `bus=None` it builds one from `settings` (`GOVBUS_URL`, or local RabbitMQ) and opens
    and closes it with the app; a given bus is the caller's to start and close. `observe`:
    other connections of this process whose counters `/metrics` shows too. `history`: what
    answers `/v1/history` (govbus gives a `bus.history.History`; none: 404). `dns`: the
    address (`host:port`) of a DNS interface served from the registry cache while the app
    serves (none: no DNS; `app.extensions["govbus.dns"]` is the `DnsServer`). Raises
    `ConfigError` when auth is required and no key is configured.
    """
    settings = settings or load_settings()
    auth = auth or Authenticator.from_settings(settings)
    limits = limits or Limits()
    owns_bus = bus is None
    if bus is None:
        bus = Bus(
            settings.bus_url(embedded=False), source="govbus/edge", rpc_timeout=limits.rpc_timeout_s
        )

    app = Quart("govbus.edge")
    app.config["MAX_CONTENT_LENGTH"] = limits.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    metrics = EdgeMetrics([bus, *observe])
    state = Edge(
        bus=bus,
        auth=auth,
        limits=limits,
        metrics=metrics,
        cache=RegistryCache(
            bus,
            max_age_s=limits.cache_max_age_s,
            rpc_timeout_s=limits.rpc_timeout_s,
            observe=lambda method, outcome, s: metrics.rpc_latency.labels(method, outcome).observe(
                s
            ),
        ),
        owns_bus=owns_bus,
        history=history,
        datacenter=settings.datacenter,
        node_name=socket.gethostname() or "govbus",
    )
    app.extensions["govbus"] = state
    metrics.watch(state.cache)
    for api in (
        ops.api,
        registry.api,
        resources.api,
        stream.api,
        history_routes.api,
        dashboard.api,
        consul.api,
        consul_read.api,
    ):
        app.register_blueprint(api.blueprint)
        state.routes.extend(api.routes)
    if settings.cors_origins:
        # Exactly the listed origins get CORS headers (preflights included, answered before any
        # token check); any other origin gets none, and its browser keeps the answer from it.
        cors(
            app,
            allow_origin=list(settings.cors_origins),
            allow_headers=CORS_ALLOW_HEADERS,
            allow_methods=CORS_ALLOW_METHODS,
            expose_headers=CORS_EXPOSE_HEADERS,
            max_age=CORS_MAX_AGE_S,
        )

    @app.before_serving
    async def open_bus() -> None:
        if state.owns_bus:
            await state.bus.start()
        await state.bus.rpc.start()
        await state.cache.start()

    if dns is not None:  # started after open_bus starts the cache, stopped before close_bus
        serve_dns(app, state.cache, dns, settings)

    @app.after_serving
    async def close_bus() -> None:
        await state.cache.close()
        if state.owns_bus:
            await state.bus.close()

    @app.before_request
    async def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    async def count(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        state.metrics.http_requests.labels(rule, request.method, str(response.status_code)).inc()
        started = g.get("started")
        # A blocking read's wait is not latency: it would drown the route's percentiles.
        if started is not None and "index" not in request.args:
            state.metrics.http_latency.labels(rule).observe(time.perf_counter() - started)
        return response

    @app.errorhandler(Problem)
    async def problem(exc: Problem) -> Response:
        return exc.response(request.path)

    @app.errorhandler(BusError)
    async def bus_error(exc: BusError) -> Response:
        return from_bus_error(exc).response(request.path)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        headers = {}
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        detail = exc.description or exc.name
        if status == 413:
            detail = f"the body is larger than {limits.max_body_bytes} bytes"
        return Problem(status, detail, headers=headers).response(request.path)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        log.error("%s %s failed: %s: %s", request.method, request.path, type(exc).__name__, exc)
        log.debug("edge failure", exc_info=exc)
        return Problem(500, "internal error").response(request.path)

    return app
