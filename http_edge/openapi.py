"""OpenAPI 3.1 of the edge, written from the routes' own declarations (`http_edge.api`).

Parameters, request bodies and answers are the JSON Schemas of the very types the routes
validate with (validation mode for what comes in, serialization mode for what goes out), and
every error status a route can answer (`Route.errors`) is documented as
`application/problem+json`. Nothing here lists routes: a route exists in the document because
it was declared, with what it was declared with.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from http_edge._context import JSON
from http_edge.api import Answer, Route
from http_edge.models import ProblemBody
from http_edge.problems import PROBLEM_JSON

REF = "#/components/schemas/{model}"
_RULE_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

_Key = tuple[str, str]


def openapi_document(routes: Sequence[Route], *, title: str = "govbus edge") -> dict[str, Any]:
    """The document of `routes`: paths, operations, and every schema they use."""
    inputs: list[tuple[_Key, JsonSchemaMode, TypeAdapter[Any]]] = [
        (("", "problem"), "serialization", TypeAdapter(ProblemBody))
    ]
    for route in routes:
        if route.body is not None:
            inputs.append(((route.operation, "body"), "validation", route.body))
        if route.ok.body is not None and route.ok.media == JSON:
            inputs.append(((route.operation, "ok"), "serialization", TypeAdapter(route.ok.body)))
    generated, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))

    def schema(key: _Key, mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(generated[(key, mode)])

    problem = schema(("", "problem"), "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        operation: dict[str, Any] = {
            "operationId": route.operation,
            "summary": route.summary,
            "tags": [route.group],
        }
        parameters = [
            *(_parameter(name, "path", adapter) for name, adapter in route.path.items()),
            *_query_parameters(route.query, schemas),
            *(_parameter(name, "header", adapter) for name, adapter in route.headers.items()),
        ]
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": route.body_required,
                "content": {JSON: {"schema": schema((route.operation, "body"), "validation")}},
            }
        if route.scope is not None:
            scopes = [route.scope] if isinstance(route.scope, str) else list(route.scope)
            operation["security"] = [{"bearer": scopes}]
        ok = (
            schema((route.operation, "ok"), "serialization")
            if route.ok.body is not None and route.ok.media == JSON
            else {"type": "string"}
        )
        operation["responses"] = {
            str(route.ok.status): _answer(route.ok, ok),
            **{str(status): _problem(status, problem) for status in route.errors()},
        }
        paths.setdefault(_RULE_PARAM.sub(r"{\1}", route.rule), {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": "1",
            "description": "Every query is a request/reply on the bus; errors are RFC 9457"
            " problem details. The bus itself: `/asyncapi.json`.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _answer(answer: Answer, schema: dict[str, Any]) -> dict[str, Any]:
    documented: dict[str, Any] = {
        "description": answer.description,
        "content": {answer.media: {"schema": schema}},
    }
    if answer.headers:
        documented["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in answer.headers.items()
        }
    return documented


def _problem(status: int, schema: dict[str, Any]) -> dict[str, Any]:
    documented: dict[str, Any] = {
        "description": HTTPStatus(status).phrase,
        "content": {PROBLEM_JSON: {"schema": schema}},
    }
    if status == 503:
        documented["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "string"}}
        }
    return documented


def _parameter(name: str, where: str, adapter: TypeAdapter[Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": _not_null(adapter.json_schema(mode="validation")),
    }


def _query_parameters(
    model: type[BaseModel] | None, schemas: dict[str, Any]
) -> list[dict[str, Any]]:
    if model is None:
        return []
    generated = model.model_json_schema(mode="validation", ref_template=REF)
    schemas.update(generated.pop("$defs", {}))
    required = set(generated.get("required", []))
    parameters = []
    for name, prop in generated.get("properties", {}).items():
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": _not_null(prop),
        }
        if prop.get("type") == "array":
            parameter["style"], parameter["explode"] = "form", True  # ?label=a=1&label=b=2
        parameters.append(parameter)
    return parameters


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional parameter is one left out, never a JSON null: drop the null branch."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) != 1 or len(branches) == len(schema.get("anyOf", [])):
        return schema
    rest = {k: v for k, v in schema.items() if k not in ("anyOf", "default")}
    return {**branches[0], **rest}
