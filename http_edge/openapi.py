"""OpenAPI 3.1 of the edge, generated from the same pydantic models the routes validate with."""

from __future__ import annotations

import functools
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from http_edge.models import (
    Accepted,
    EventsQuery,
    HeartbeatBody,
    InstanceAction,
    PickQuery,
    ProblemBody,
    RegisterBody,
    ResourceSpecBody,
    ResourcesQuery,
    ServiceQuery,
)
from schemas.registry import Instance
from schemas.resources import ResourcePatch
from schemas.rpc import DeleteReply, ResourcePage, ResourceReply, ServicesView, ServiceView

REF = "#/components/schemas/{model}"
_BODIES: tuple[type[BaseModel], ...] = (
    Accepted,
    DeleteReply,
    HeartbeatBody,
    Instance,
    ProblemBody,
    RegisterBody,
    ResourcePage,
    ResourcePatch,
    ResourceReply,
    ResourceSpecBody,
    ServiceView,
    ServicesView,
)

DOCS_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>govbus API</title>
<link rel="stylesheet" href="https://unpkg.com/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://unpkg.com/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>
"""

_NAME_SCHEMA = {"type": "string", "pattern": "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"}
_ID_SCHEMA = {
    "type": "string",
    "pattern": "^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$",
}


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _problems(*statuses: int) -> dict[str, Any]:
    content = {"application/problem+json": {"schema": _ref(ProblemBody)}}
    return {str(s): {"description": "problem", "content": content} for s in statuses}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    params = []
    for name, prop in schema.get("properties", {}).items():
        # An optional parameter is one left out, never a JSON null.
        branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
            prop = {**branches[0], **rest}  # noqa: PLW2901
        param: dict[str, Any] = {"name": name, "in": "query", "required": False, "schema": prop}
        if prop.get("type") == "array":
            param["style"], param["explode"] = "form", True
        params.append(param)
    return params


def _op(
    summary: str,
    scope: str | None,
    responses: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": dict(responses)}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    if scope is not None:
        op["security"] = [{"bearer": [scope]}]
        errors = (401, 403, *errors)
    op["responses"].update(_problems(*errors))
    return op


@functools.cache
def openapi_document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in _BODIES], ref_template=REF)
    schemas = defs["$defs"]
    # What validators say and JSON Schema does not: a spec in a request names its `kind` (the
    # union is discriminated on it), and a patch changes at least one field.
    for spec in ("VmSpec", "VolumeSpec", "NetworkSpec"):
        if spec in schemas:
            schemas[spec]["required"] = sorted({"kind", *schemas[spec].get("required", [])})
    if "ResourcePatch" in schemas:
        patch = schemas["ResourcePatch"]
        patch["minProperties"] = 1
        for name, prop in patch.get("properties", {}).items():
            branches = [b for b in prop.get("anyOf", []) if b.get("type") != "null"]
            if name != "attached_to" and len(branches) == 1:  # null only detaches a volume
                rest = {k: v for k, v in prop.items() if k not in ("anyOf", "default")}
                patch["properties"][name] = {**branches[0], **rest}
    text = {"description": "text", "content": {"text/plain": {"schema": {"type": "string"}}}}
    ok = {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}
    bus_errors = (503, 504)
    svc = _path("name", _NAME_SCHEMA)
    res = _path("name", _NAME_SCHEMA)
    iid = _path("instance_id", _ID_SCHEMA)
    if_match = {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": '^"[1-9][0-9]{0,17}"$'},
    }
    paths: dict[str, Any] = {
        "/": {"get": _op("Hello World!", None, {"200": text})},
        "/hello": {"get": _op("Hello World!", None, {"200": text})},
        "/healthz": {"get": _op("Liveness", None, {"200": ok})},
        "/readyz": {
            "get": _op("Readiness: the bus is connected", None, {"200": ok}, errors=(503,))
        },
        "/v1/services": {
            "get": _op(
                "Every service, summarised",
                "registry:read",
                {"200": _json(ServicesView, "the services")},
                errors=bus_errors,
            )
        },
        "/v1/services/{name}": {
            "get": _op(
                "The instances of one service",
                "registry:read",
                {"200": _json(ServiceView, "the service")},
                params=[svc, *_query(ServiceQuery)],
                errors=(404, 422, *bus_errors),
            )
        },
        "/v1/services/{name}/pick": {
            "get": _op(
                "One instance, load-balanced",
                "registry:read",
                {"200": _json(Instance, "the instance")},
                params=[svc, *_query(PickQuery)],
                errors=(404, 422, *bus_errors),
            )
        },
        "/v1/instances": {
            "post": _op(
                "Register an instance (publishes registry.register)",
                "registry:write",
                {"202": _json(Accepted, "the event was confirmed")},
                body=RegisterBody,
                errors=(400, 413, 415, 422, *bus_errors),
            )
        },
        "/v1/instances/{instance_id}/heartbeat": {
            "put": _op(
                "Heartbeat (publishes registry.heartbeat)",
                "registry:write",
                {"202": _json(Accepted, "the event was confirmed")},
                params=[iid],
                body=HeartbeatBody,
                errors=(400, 404, 413, 415, 422, *bus_errors),
            )
        },
        "/v1/instances/{instance_id}/drain": {
            "put": _op(
                "Drain (publishes registry.drain)",
                "registry:write",
                {"202": _json(Accepted, "the event was confirmed")},
                params=[iid, *_query(InstanceAction)],
                errors=(404, 422, *bus_errors),
            )
        },
        "/v1/instances/{instance_id}": {
            "delete": _op(
                "Deregister (publishes registry.deregister)",
                "registry:write",
                {"202": _json(Accepted, "the event was confirmed")},
                params=[iid, *_query(InstanceAction)],
                errors=(404, 422, *bus_errors),
            )
        },
        "/v1/resources": {
            "get": _op(
                "A page of resources",
                "resources:read",
                {"200": _json(ResourcePage, "a page")},
                params=_query(ResourcesQuery),
                errors=(422, *bus_errors),
            ),
            "post": _op(
                "Create a resource",
                "resources:write",
                {"201": _json(ResourceReply, "the resource; ETag is its version")},
                body=ResourceSpecBody,
                errors=(400, 409, 413, 415, 422, *bus_errors),
            ),
        },
        "/v1/resources/{name}": {
            "get": _op(
                "One resource",
                "resources:read",
                {"200": _json(ResourceReply, "the resource; ETag is its version")},
                params=[res],
                errors=(404, 422, *bus_errors),
            ),
            "patch": _op(
                "Change fields of a resource (If-Match: its ETag)",
                "resources:write",
                {"200": _json(ResourceReply, "the resource")},
                params=[res, if_match],
                body=ResourcePatch,
                errors=(400, 404, 409, 413, 415, 422, *bus_errors),
            ),
            "delete": _op(
                "Delete a resource",
                "resources:write",
                {"200": _json(DeleteReply, "deleted")},
                params=[res, if_match],
                errors=(400, 404, 409, 422, *bus_errors),
            ),
        },
        "/resource": {
            "get": _op(
                "The article's resource list",
                "resources:read",
                {"200": ok | {"content": {"application/json": {"schema": {"type": "array"}}}}},
                params=_query(ResourcesQuery),
                errors=(422, *bus_errors),
            )
        },
        "/resource/{name}": {
            "get": _op(
                "The article's resource by name",
                "resources:read",
                {"200": _json(ResourceReply, "the resource")},
                params=[res],
                errors=(404, 422, *bus_errors),
            )
        },
        "/v1/events": {
            "get": _op(
                "Server-sent events, filtered by routing patterns",
                "events:read",
                {
                    "200": {
                        "description": "text/event-stream",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    }
                },
                params=_query(EventsQuery),
                errors=(422, 503),
            )
        },
        "/metrics": {
            "get": _op(
                "Prometheus metrics",
                None,
                {"200": {"description": "metrics", "content": {"text/plain": {"schema": {}}}}},
            )
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "govbus edge", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
