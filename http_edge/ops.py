"""The article's greeting, health, readiness, metrics, and the descriptions of the API and the
bus: `/openapi.json`, `/asyncapi.json` and `/docs` (Swagger UI from the `swagger-ui-bundle-v2`
package's files: no CDN, so it works offline)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from quart import Response, send_from_directory
from swagger_ui_bundle import swagger_ui_path

from bus.errors import BusError
from http_edge._context import JSON, call, edge, json_response
from http_edge.api import Answer, Api
from http_edge.asyncapi import asyncapi_document
from http_edge.openapi import openapi_document
from schemas.rpc import ResourcePage, ResourcesRequest, ServicesRequest, ServicesView

log = logging.getLogger(__name__)
api = Api("ops")

SIZE_PAGES = 20  # inventory size is counted over at most this many pages of 500
TEXT = "text/plain"
ASSETS = Path(str(swagger_ui_path))
Asset = Literal["swagger-ui.css", "swagger-ui-bundle.js"]

# Relative links: the page works behind a proxy that mounts the edge under a prefix.
DOCS_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>govbus API</title>
<link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>
SwaggerUIBundle({url: "openapi.json", dom_id: "#ui", deepLinking: true, validatorUrl: null});
</script>
</body></html>
"""


class Health(BaseModel):
    status: str
    reason: str | None = None


# Declared bottom-up: `/` first.
@api.get("/hello", "Hello World!", ok=Answer(str, media=TEXT, description="the greeting"))
@api.get("/", "Hello World!", ok=Answer(str, media=TEXT, description="the article's greeting"))
async def hello() -> Response:
    return Response("Hello World!", content_type="text/plain")


@api.get("/healthz", "Liveness", ok=Answer(Health, description="alive"))
async def healthz() -> Response:
    return json_response({"status": "ok"})


@api.get(
    "/readyz",
    "Readiness: the bus is connected",
    ok=Answer(Health, description="ready"),
    raises=(503,),
)
async def readyz() -> Response:
    bus = edge().bus
    if bus.transport.is_connected:
        return json_response({"status": "ready"})
    return json_response(
        {"status": "not ready", "reason": "the bus is not connected"},
        503,
        {"Retry-After": "1"},
    )


@api.get(
    "/metrics",
    "Prometheus metrics",
    ok=Answer(str, media=TEXT, description="the text exposition format"),
    bus=True,
)
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


@api.get(
    "/openapi.json",
    "This document: the HTTP API",
    ok=Answer(dict[str, Any], description="OpenAPI 3.1"),
)
async def openapi() -> Response:
    routes = edge().routes
    return await _document("openapi", lambda: openapi_document(routes))


@api.get(
    "/asyncapi.json",
    "The bus: exchanges, queues, every event type and RPC method",
    ok=Answer(dict[str, Any], description="AsyncAPI 3.0"),
)
async def asyncapi() -> Response:
    return await _document("asyncapi", asyncapi_document)


async def _document(name: str, build: Callable[[], dict[str, Any]]) -> Response:
    state = edge()
    if name not in state.documents:
        # Built once per app, off the event loop (schema generation takes a moment).
        state.documents[name] = await asyncio.to_thread(lambda: orjson.dumps(build()))
    return Response(state.documents[name], content_type=JSON)


@api.get(
    "/docs", "The HTTP API, browsable", ok=Answer(str, media="text/html", description="a page")
)
async def docs() -> Response:
    return Response(DOCS_HTML, content_type="text/html; charset=utf-8")


@api.get(
    "/docs/<asset>",
    "A file of the /docs page",
    path={"asset": Asset},
    ok=Answer(str, media="text/*", description="the stylesheet or the script"),
)
async def docs_asset(asset: str) -> Response:
    mimetype = "text/css" if asset.endswith(".css") else "text/javascript"
    return await send_from_directory(ASSETS, asset, mimetype=mimetype, cache_timeout=86_400)
