"""The article's greeting, health, readiness, metrics, and the API description."""

from __future__ import annotations

import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response

from bus.errors import BusError
from http_edge._context import call, edge, endpoint, json_response
from http_edge.openapi import DOCS_HTML, openapi_document
from schemas.rpc import ResourcePage, ResourcesRequest, ServicesRequest, ServicesView

log = logging.getLogger(__name__)
blueprint = Blueprint("ops", __name__)

SIZE_PAGES = 20  # inventory size is counted over at most this many pages of 500


@blueprint.get("/")
@blueprint.get("/hello")
@endpoint()
async def hello() -> Response:
    return Response("Hello World!", content_type="text/plain")


@blueprint.get("/healthz")
@endpoint()
async def healthz() -> Response:
    return json_response({"status": "ok"})


@blueprint.get("/readyz")
@endpoint()
async def readyz() -> Response:
    bus = edge().bus
    if bus.transport.is_connected:
        return json_response({"status": "ready"})
    return json_response(
        {"status": "not ready", "reason": "the bus is not connected"},
        503,
        {"Retry-After": "1"},
    )


@blueprint.get("/metrics")
@endpoint()
async def metrics() -> Response:
    state = edge()
    collector = state.metrics.bus_collector
    with contextlib.suppress(BusError):
        view = await call("discovery.services", ServicesRequest(), ServicesView)
        collector.registry_size = sum(s.instances for s in view.services)
    with contextlib.suppress(BusError):
        count, cursor = 0, None
        for _ in range(SIZE_PAGES):
            page = await call(
                "manager.resources", ResourcesRequest(limit=500, cursor=cursor), ResourcePage
            )
            count += len(page.items)
            cursor = page.next
            if cursor is None:
                break
        collector.inventory_size = count
    return Response(generate_latest(state.metrics.registry), content_type=CONTENT_TYPE_LATEST)


@blueprint.get("/openapi.json")
@endpoint()
async def openapi() -> Response:
    return json_response(openapi_document())


@blueprint.get("/docs")
@endpoint()
async def docs() -> Response:
    return Response(DOCS_HTML, content_type="text/html; charset=utf-8")
