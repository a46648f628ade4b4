"""AsyncAPI 3.0 of the bus, written from the wire contract and the topology.

Every event type (`schemas.EVENT_TYPES`) is a message on `govbus.events` with its payload
schema, its CloudEvents headers and AMQP properties; every RPC method (`schemas.RPC_CONTRACT`)
is an operation on `govbus.rpc` with its request and its replies; the exchanges and queues are
those `bus.topology` declares, with the arguments it declares them with. The operations are
what a client of the bus does: publish an event, call a method.
"""

from __future__ import annotations

import functools
from typing import Any, get_args

from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode

from bus.message import JSON, SPECVERSION
from bus.rpc import DEADLINE, STATUS
from bus.topology import (
    DELIVERY_LIMIT,
    DLX,
    EVENTS,
    LOG_STREAM,
    RPC,
    dead_letter_queue,
    rpc_queue,
    worker_queue,
)
from bus.transport.base import DIRECT_REPLY_TO, QueueSpec
from schemas import EVENT_TYPES, RPC_CONTRACT, ErrorBody, ErrorCode

REF = "#/components/schemas/{model}"
AMQP = "0.3.0"  # the AMQP bindings version
_TRACEPARENT = {"type": "string", "pattern": "^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"}


@functools.cache
def asyncapi_document() -> dict[str, Any]:
    """The bus, as AsyncAPI 3.0.0."""
    services = sorted({method.split(".", 1)[0] for method in RPC_CONTRACT})
    schemas, payloads = _schemas()
    messages = {
        **{kind: _event_message(kind, payloads[kind]) for kind in EVENT_TYPES},
        **{f"{m}.request": _request_message(m, payloads[f"{m}.request"]) for m in RPC_CONTRACT},
        **{f"{m}.reply": _reply_message(m, payloads[f"{m}.reply"]) for m in RPC_CONTRACT},
        "rpc.error": _error_message(payloads["rpc.error"]),
        "dead-letter": _dead_letter_message(),
    }
    channels: dict[str, Any] = {
        "events": {
            "address": "{type}",
            "title": EVENTS,
            "description": "Every event, routed by its type. Events are persistent, published"
            " with confirms and the mandatory flag: one that no queue takes is an error.",
            "parameters": {"type": {"enum": list(EVENT_TYPES), "description": "the event type"}},
            "messages": _refs(EVENT_TYPES),
            "bindings": _exchange(EVENTS, "topic"),
        },
        "rpc": {
            "address": "{method}",
            "title": RPC,
            "description": "Requests, routed by method to the queue of the worker serving it;"
            " published mandatory, so a method nobody serves comes back at once.",
            "parameters": {"method": {"enum": list(RPC_CONTRACT), "description": "the method"}},
            "messages": _refs(f"{m}.request" for m in RPC_CONTRACT),
            "bindings": _exchange(RPC, "direct"),
        },
        "replies": {
            "address": DIRECT_REPLY_TO,
            "description": "RabbitMQ's direct reply-to: each answer carries the request's"
            f" correlation_id and header {STATUS}.",
            "messages": _refs([*(f"{m}.reply" for m in RPC_CONTRACT), "rpc.error"]),
            "bindings": {"amqp": {"is": "queue", "queue": {"name": DIRECT_REPLY_TO}, **_version()}},
        },
        "dead-letters": {
            "address": "{queue}",
            "title": DLX,
            "description": "What a worker could not apply, routed by the queue it came from.",
            "parameters": {"queue": {"description": "the worker queue, e.g. govbus.discovery"}},
            "messages": _refs(["dead-letter"]),
            "bindings": _exchange(DLX, "topic"),
        },
        LOG_STREAM.name: {
            "address": LOG_STREAM.name,
            "description": "Every event, kept as a stream (on RabbitMQ): the recorded log.",
            "messages": _refs(EVENT_TYPES),
            "bindings": _queue(LOG_STREAM),
        },
    }
    for service in services:
        queue = worker_queue(f"govbus.{service}")
        channels[queue.name] = {
            "address": queue.name,
            "description": f"The {service} worker's events: a quorum queue bound to"
            f" {EVENTS} by the types it handles; a message that fails {DELIVERY_LIMIT}"
            f" deliveries, or its retries, is dead-lettered into {queue.name}.dlq.",
            "bindings": _queue(queue),
        }
        dlq = dead_letter_queue(queue.name)
        channels[dlq.name] = {
            "address": dlq.name,
            "description": f"What the {service} worker could not apply, with the reason.",
            "messages": _refs(["dead-letter"]),
            "bindings": _queue(dlq),
        }
        served = rpc_queue(service)
        channels[served.name] = {
            "address": served.name,
            "description": f"Requests the {service} worker serves; gone with the last worker.",
            "messages": _refs(f"{m}.request" for m in RPC_CONTRACT if m.startswith(f"{service}.")),
            "bindings": _queue(served),
        }
    operations: dict[str, Any] = {}
    for kind, model in EVENT_TYPES.items():
        operations[kind] = {
            "action": "send",
            "title": f"Publish {kind}",
            "summary": _summary(model),
            "channel": {"$ref": "#/channels/events"},
            "messages": [{"$ref": f"#/channels/events/messages/{kind}"}],
            "bindings": {
                "amqp": {"deliveryMode": 2, "mandatory": True, "timestamp": True, **_version()}
            },
        }
    for method, (request, _) in RPC_CONTRACT.items():
        operations[method] = {
            "action": "send",
            "title": f"Call {method}",
            "summary": _summary(request),
            "channel": {"$ref": "#/channels/rpc"},
            "messages": [{"$ref": f"#/channels/rpc/messages/{method}.request"}],
            "reply": {
                "channel": {"$ref": "#/channels/replies"},
                "messages": [
                    {"$ref": f"#/channels/replies/messages/{method}.reply"},
                    {"$ref": "#/channels/replies/messages/rpc.error"},
                ],
            },
            "bindings": {"amqp": {"deliveryMode": 1, "mandatory": True, **_version()}},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "govbus",
            "version": "1",
            "description": "Microservice governance over RabbitMQ. An event is a CloudEvents"
            " 1.0 event in binary mode: the body is the JSON payload, the attributes are AMQP"
            " properties and `ce-*` headers. Schema changes are additive (unknown fields are"
            " ignored); a breaking change is a new type with a `.v2` suffix.",
        },
        "defaultContentType": JSON,
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


def _schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    """Every schema, and the payload of each message by name: events and replies as they are
    published, requests as the server takes them."""
    inputs: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
        *((kind, "serialization", TypeAdapter(m)) for kind, m in EVENT_TYPES.items()),
        *((f"{m}.request", "validation", TypeAdapter(r)) for m, (r, _) in RPC_CONTRACT.items()),
        *((f"{m}.reply", "serialization", TypeAdapter(r)) for m, (_, r) in RPC_CONTRACT.items()),
        ("rpc.error", "serialization", TypeAdapter(ErrorBody)),
    ]
    payloads, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
    schemas = _asyncapi_schema(defs.get("$defs", {}))
    schemas["CloudEventHeaders"] = {
        "type": "object",
        "required": ["ce-specversion", "ce-time", "ce-source"],
        "properties": {
            "ce-specversion": {"const": SPECVERSION},
            "ce-time": {
                "type": "string",
                "format": "date-time",
                "description": "when it happened: RFC 3339, UTC, microseconds",
            },
            "ce-source": {"type": "string", "description": "who published it (also app_id)"},
            "traceparent": {**_TRACEPARENT, "description": "W3C trace context"},
        },
    }
    return schemas, {name: _asyncapi_schema(schema) for (name, _), schema in payloads.items()}


def _asyncapi_schema(value: Any) -> Any:
    """pydantic's JSON Schema in AsyncAPI's dialect: its `discriminator` is the property name."""
    if isinstance(value, list):
        return [_asyncapi_schema(item) for item in value]
    if not isinstance(value, dict):
        return value
    converted = {key: _asyncapi_schema(item) for key, item in value.items()}
    if isinstance(converted.get("discriminator"), dict):
        converted["discriminator"] = converted["discriminator"]["propertyName"]
    return converted


def _event_message(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    model = EVENT_TYPES[kind]
    return {
        "name": kind,
        "title": model.__name__,
        "summary": _summary(model),
        "contentType": JSON,
        "headers": {"$ref": "#/components/schemas/CloudEventHeaders"},
        "payload": payload,
        "bindings": {"amqp": {"messageType": kind, **_version()}},
        "x-amqp-properties": {
            "message_id": "the event id, a UUID",
            "type": f"{kind} (also the routing key)",
            "timestamp": "when it happened, in whole seconds (ce-time has the full precision)",
            "app_id": "who published it (as ce-source)",
            "content_type": JSON,
            "correlation_id": "optional",
        },
    }


def _request_message(method: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = RPC_CONTRACT[method][0]
    return {
        "name": f"{method}.request",
        "title": request.__name__,
        "summary": _summary(request),
        "contentType": JSON,
        "headers": {
            "type": "object",
            "properties": {
                DEADLINE: {"type": "integer", "description": "the caller's deadline, epoch ms"},
                "traceparent": {**_TRACEPARENT, "description": "W3C trace context"},
            },
        },
        "payload": payload,
        "x-amqp-properties": {
            "reply_to": DIRECT_REPLY_TO,
            "correlation_id": "chosen by the caller, carried back by the reply",
            "expiration": "the caller's deadline in ms: the broker drops it unread after",
            "timestamp": "when it was sent, in whole seconds",
        },
    }


def _reply_message(method: str, payload: dict[str, Any]) -> dict[str, Any]:
    reply = RPC_CONTRACT[method][1]
    return {
        "name": f"{method}.reply",
        "title": reply.__name__,
        "contentType": JSON,
        "headers": {
            "type": "object",
            "required": [STATUS],
            "properties": {STATUS: {"const": "ok"}},
        },
        "payload": payload,
        "x-amqp-properties": {"correlation_id": "the request's"},
    }


def _error_message(payload: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "rpc.error",
        "title": "ErrorBody",
        "summary": "A failed request: the code is also the status header.",
        "contentType": JSON,
        "headers": {
            "type": "object",
            "required": [STATUS],
            "properties": {STATUS: {"enum": list(get_args(ErrorCode))}},
        },
        "payload": payload,
        "x-amqp-properties": {"correlation_id": "the request's"},
    }


def _dead_letter_message() -> dict[str, Any]:
    # The headers `bus.consumer.dead_letter` adds to a copy of the message it gives up on.
    return {
        "name": "dead-letter",
        "summary": "A message a worker gave up on, as it came, with the reason.",
        "headers": {
            "type": "object",
            "properties": {
                "x-govbus-error": {"type": "string", "maxLength": 1000},
                "x-govbus-attempts": {"type": "integer", "minimum": 0},
                "x-govbus-queue": {"type": "string"},
                "x-govbus-routing-key": {"type": "string"},
                "x-govbus-exchange": {"type": "string"},
            },
        },
        "payload": {"description": "the original body"},
    }


def _exchange(name: str, kind: str) -> dict[str, Any]:
    exchange = {"name": name, "type": kind, "durable": True, "autoDelete": False}
    return {"amqp": {"is": "routingKey", "exchange": exchange, **_version()}}


def _queue(spec: QueueSpec) -> dict[str, Any]:
    queue = {
        "name": spec.name,
        "durable": spec.durable,
        "exclusive": spec.exclusive,
        "autoDelete": spec.auto_delete,
    }
    binding: dict[str, Any] = {"is": "queue", "queue": queue, **_version()}
    if spec.arguments:
        binding["x-arguments"] = dict(spec.arguments)  # RabbitMQ's queue arguments
    return {"amqp": binding}


def _refs(names: Any) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/messages/{name}"} for name in names}


def _version() -> dict[str, str]:
    return {"bindingVersion": AMQP}


def _summary(model: type) -> str:
    return (model.__doc__ or model.__name__).strip().split("\n\n")[0].replace("\n", " ")
