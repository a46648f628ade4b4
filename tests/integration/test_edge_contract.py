"""The edge's published contracts, through real workers on the embedded bus.

`/openapi.json` is written from the routes' declarations: every route is in it, and what it
admits the server accepts (the requests schemathesis once found refused are here, by name).
`/asyncapi.json` describes the bus from the wire contract and validates against the official
AsyncAPI 3.0.0 schema. `/docs` needs nothing from outside the edge.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, Draft202012Validator
from swagger_ui_bundle import swagger_ui_path

from bus.topology import DELIVERY_LIMIT, DLX, EVENTS, RPC, worker_queue
from schemas import EVENT_TYPES, RPC_CONTRACT
from tests._asyncapi import asyncapi_3_schema
from tests._edge_stack import edge_stack

pytestmark = pytest.mark.asyncio

JSON = "application/json"
REGISTER = {"service": "web", "instance_id": "web-1", "address": "10.0.0.1", "port": 80}


@pytest.fixture
async def stack(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path) as s:
        yield s


async def document(stack, path: str) -> dict[str, Any]:
    r = await stack.client.get(path)  # public: no token
    assert r.status_code == 200 and r.content_type == JSON
    return await r.get_json()


def admits(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    """Whether `schema` (of the OpenAPI document `doc`) admits `value`, formats included."""
    validator = Draft202012Validator(
        {**schema, "components": doc["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    return validator.is_valid(value)


async def test_every_route_is_declared_in_the_openapi_document(stack):
    doc = await document(stack, "/openapi.json")
    served = {
        (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule), method.lower())
        for rule in stack.app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert served == documented
    assert doc["openapi"] == "3.1.0"
    assert "RegisterBody" in doc["components"]["schemas"]


NET = {"kind": "network", "name": "net"}
CASES = [
    # (what, method, template, path, headers, body): the document admits it iff the server does
    ("address '0' (schemathesis)", "POST", "/v1/instances", "", {}, {**REGISTER, "address": "0"}),
    ("an IPv6 address", "POST", "/v1/instances", "", {}, {**REGISTER, "address": "2001:db8::7"}),
    ("a hostname", "POST", "/v1/instances", "", {}, {**REGISTER, "address": "web-1.example"}),
    ("a line break in a tag", "POST", "/v1/instances", "", {}, {**REGISTER, "tags": ["a\nb"]}),
    ("a space in a meta key", "POST", "/v1/instances", "", {}, {**REGISTER, "meta": {"a b": ""}}),
    (
        "NUL in a note",
        "PUT",
        "/v1/instances/{instance_id}/heartbeat",
        "/v1/instances/web-1/heartbeat",
        {},
        {"note": "\x00"},
    ),
    ("cidr '' (schemathesis)", "POST", "/v1/resources", "", {}, {**NET, "cidr": ""}),
    ("an IPv6 network", "POST", "/v1/resources", "", {}, {**NET, "cidr": "2001:db8:a800::/37"}),
    ("cidr '' in a patch (schemathesis)", "PATCH", "/v1/resources/{name}", "", {}, {"cidr": ""}),
    ("host bits in a patch", "PATCH", "/v1/resources/{name}", "", {}, {"cidr": "10.9.0.1/16"}),
    ("a patch", "PATCH", "/v1/resources/{name}", "", {}, {"cidr": "10.8.0.0/16"}),
    ("If-Match: 0 (schemathesis)", "DELETE", "/v1/resources/{name}", "", {"If-Match": "0"}, None),
    ("If-Match: 9", "DELETE", "/v1/resources/{name}", "", {"If-Match": "9"}, None),
    ('If-Match: W/"9"', "DELETE", "/v1/resources/{name}", "", {"If-Match": 'W/"9"'}, None),
]
REFUSED = {400, 415, 422}


@pytest.mark.parametrize(("what", "method", "template", "path", "headers", "body"), CASES)
async def test_what_the_document_admits_the_server_accepts(
    stack, what, method, template, path, headers, body
):
    c, h = stack.client, stack.headers
    r = await c.post("/v1/resources", headers=h, json={**NET, "name": "lan", "cidr": "10.9.0.0/16"})
    assert r.status_code == 201, await r.get_data()
    doc = await document(stack, "/openapi.json")
    operation = doc["paths"][template][method.lower()]
    admitted = True
    if body is not None:
        admitted = admits(doc, operation["requestBody"]["content"][JSON]["schema"], body)
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "header" and parameter["name"] in headers:
            admitted &= admits(doc, parameter["schema"], headers[parameter["name"]])
    sent = {"json": body} if body is not None else {}
    target = path or template.replace("{name}", "lan")
    r = await c.open(target, method=method, headers={**h, **headers}, **sent)
    accepted = r.status_code not in REFUSED
    assert admitted == accepted, (what, admitted, r.status_code, await r.get_data())


async def test_asyncapi_describes_the_bus_and_is_valid_asyncapi_3(stack):
    doc = await document(stack, "/asyncapi.json")
    messages, channels, operations = (
        doc["components"]["messages"],
        doc["channels"],
        doc["operations"],
    )
    schemas = doc["components"]["schemas"]
    for kind in EVENT_TYPES:
        message = messages[kind]
        assert message["bindings"]["amqp"]["messageType"] == kind
        assert message["payload"]["$ref"].rsplit("/", 1)[1] in schemas
        assert kind in channels["events"]["messages"]
        assert operations[kind]["bindings"]["amqp"]["deliveryMode"] == 2  # persistent
    headers = schemas["CloudEventHeaders"]
    assert {"ce-specversion", "ce-time", "ce-source", "traceparent"} <= set(headers["properties"])
    for method in RPC_CONTRACT:
        call = operations[method]
        assert call["messages"] == [{"$ref": f"#/channels/rpc/messages/{method}.request"}]
        assert {"$ref": f"#/channels/replies/messages/{method}.reply"} in call["reply"]["messages"]
        assert messages[f"{method}.reply"]["headers"]["properties"]["x-govbus-status"]
    assert channels["events"]["bindings"]["amqp"]["exchange"] == {
        "name": EVENTS,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
    }
    assert channels["rpc"]["bindings"]["amqp"]["exchange"]["name"] == RPC
    assert channels["dead-letters"]["bindings"]["amqp"]["exchange"]["name"] == DLX
    for queue in ("govbus.discovery", "govbus.manager"):
        binding = channels[queue]["bindings"]["amqp"]
        assert binding["x-arguments"] == worker_queue(queue).arguments
        assert binding["x-arguments"]["x-delivery-limit"] == DELIVERY_LIMIT
        assert f"{queue}.dlq" in channels

    official = Draft7Validator(asyncapi_3_schema())
    assert not [e.message for e in official.iter_errors(doc)]
    broken = copy.deepcopy(doc)
    del broken["operations"]["registry.register"]["action"]
    assert not official.is_valid(broken)  # the check has teeth


async def test_docs_work_offline(stack):
    c = stack.client
    r = await c.get("/docs")
    assert r.status_code == 200 and r.content_type.startswith("text/html")
    page = (await r.get_data()).decode()
    assert "//" not in page  # no URL off the edge: no CDN
    assets = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(assets) == ["docs/swagger-ui-bundle.js", "docs/swagger-ui.css"]
    for asset in assets:
        r = await c.get(f"/{asset}")
        assert r.status_code == 200, asset
        assert await r.get_data() == (Path(str(swagger_ui_path)) / Path(asset).name).read_bytes()
    assert 'url: "openapi.json"' in page and (await c.get("/openapi.json")).status_code == 200
