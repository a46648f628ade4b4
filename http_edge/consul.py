"""Consul's agent API for registration, so Consul clients register with govbus unchanged.

`PUT /v1/agent/service/register` (Consul's body: Go's CamelCase or lowercase keys, `Check` /
`Checks` of kind HTTP, TCP or TTL; see `_consul_body`), `PUT /v1/agent/service/deregister/<id>`,
`PUT /v1/agent/check/pass|warn|fail/<check_id>` and `/v1/agent/check/update/<check_id>` (TTL
checks: a heartbeat with that status). Writes become the same events as govbus's own routes.
Every answer carries Consul's `X-Consul-Index` (at least 1), `X-Consul-KnownLeader` and
`X-Consul-LastContact`; the token may come as `X-Consul-Token`. The reads are in
`consul_read`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from quart import Response, g, request

from bus.errors import NotFound
from http_edge._consul_body import (
    TTL_CHECK_META,
    ConsulInvalid,
    register_payload,
    ttl_check_instance,
)
from http_edge._context import call, publish
from http_edge.api import Answer, Api
from http_edge.problems import Problem, from_validation_error
from schemas import InstanceId, Status, Text
from schemas.registry import Deregister, Heartbeat, Register
from schemas.rpc import InstanceRequest, InstanceView, RegistryView, StateRequest

api = Api("consul", acl=True)

WRITE = "registry:write"
CONSUL_HEADERS = {
    "X-Consul-Index": "the registry index (at least 1)",
    "X-Consul-KnownLeader": "always true",
    "X-Consul-LastContact": "always 0",
}
DONE = Answer(
    None,
    200,
    "the event was confirmed by the broker (no body, as Consul)",
    media="text/plain",
    headers=CONSUL_HEADERS,
)
STATUS: dict[str, Status] = {"pass": "passing", "warn": "warning", "fail": "critical"}


class CheckNote(BaseModel):
    """`?note=`: what a TTL check update says."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    note: Text = ""


@api.blueprint.after_request
async def consul_headers(response: Response) -> Response:
    response.headers["X-Consul-Index"] = str(max(1, int(g.get("consul_index", 1))))
    response.headers["X-Consul-KnownLeader"] = "true"
    response.headers["X-Consul-LastContact"] = "0"
    return response


def done() -> Response:
    """Consul's answer to a write: 200 with an empty body."""
    return Response(b"", status=200, content_type="text/plain")


ConsulService = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "description": "Consul's service definition (Name, ID, Address, Port, Tags, Meta, "
            "Weights, Check, Checks), keys in any case as Consul reads them",
        }
    ),
]


@api.put(
    "/v1/agent/service/register",
    "Register a service with Consul's body (publishes registry.register)",
    scope=WRITE,
    body=ConsulService,
    any_media=True,
    ok=DONE,
    raises=(422,),
    bus=True,
)
async def consul_register(body: dict[str, Any]) -> Response:
    # Consul decodes keys without case, which a JSON Schema cannot say: translated here.
    try:
        payload = register_payload(body, default_address=request.remote_addr or "127.0.0.1")
        event = Register.model_validate(payload)
    except ConsulInvalid as exc:
        errors = [{"field": exc.field, "message": exc.message}]
        raise Problem(422, str(exc), slug="invalid", errors=errors) from None
    except ValidationError as exc:
        raise from_validation_error(exc) from None
    await publish(event)
    return done()


async def _instance(instance_id: str) -> InstanceView:
    view = await call("discovery.instance", InstanceRequest(instance_id=instance_id), InstanceView)
    g.consul_index = view.index
    return view


@api.put(
    "/v1/agent/service/deregister/<service_id>",
    "Deregister a service instance (publishes registry.deregister)",
    scope=WRITE,
    path={"service_id": InstanceId},
    ok=DONE,
    raises=(404,),
    bus=True,
)
async def consul_deregister(service_id: str) -> Response:
    view = await _instance(service_id)
    await publish(Deregister(service=view.instance.service, instance_id=service_id))
    return done()


async def _ttl_owner(check_id: str) -> str:
    instance_id = ttl_check_instance(check_id)
    if instance_id is not None:
        return instance_id
    # A TTL check with an id of its own: the instance that registered it keeps it in meta.
    state = await call("discovery.state", StateRequest(), RegistryView)
    for instance in state.instances:
        if instance.meta.get(TTL_CHECK_META) == check_id:
            return instance.instance_id
    raise NotFound(f"no TTL check {check_id!r} is registered", {"check_id": check_id})


@api.put(
    "/v1/agent/check/<verdict>/<check_id>",
    "Update a TTL check: pass, warn or fail (publishes registry.heartbeat)",
    scope=WRITE,
    path={"verdict": Literal["pass", "warn", "fail"], "check_id": Text},
    query=CheckNote,
    ok=DONE,
    raises=(404,),
    bus=True,
)
async def consul_check_update(verdict: str, check_id: str, query: CheckNote) -> Response:
    await _ttl_heartbeat(check_id, STATUS[verdict], query.note)
    return done()


async def _ttl_heartbeat(check_id: str, status: Status, note: str) -> None:
    view = await _instance(await _ttl_owner(check_id))
    instance = view.instance
    if instance.ttl_s == 0:  # its checks alone decide: a pass would change nothing
        raise NotFound(
            f"no TTL check {check_id!r}: {instance.instance_id!r} has none (its HTTP or TCP "
            "checks decide its status)",
            {"check_id": check_id},
        )
    await publish(
        Heartbeat(
            service=instance.service, instance_id=instance.instance_id, status=status, note=note
        )
    )


class CheckUpdateBody(BaseModel):
    """Go's `checkUpdate` (`Agent.UpdateTTL`): a status and the check's output."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    Status: Literal["passing", "warning", "critical", "pass", "warn", "fail"]
    Output: Annotated[str, Field(max_length=65_536)] = ""


@api.put(
    "/v1/agent/check/update/<check_id>",
    "Update a TTL check with a status and output, as Go's Agent.UpdateTTL does "
    "(publishes registry.heartbeat; the output becomes its note, cut to 1024 characters)",
    scope=WRITE,
    path={"check_id": Text},
    body=CheckUpdateBody,
    any_media=True,
    ok=DONE,
    raises=(404,),
    bus=True,
)
async def consul_check_set(check_id: str, body: CheckUpdateBody) -> Response:
    status = STATUS.get(body.Status) or cast(Status, body.Status)
    await _ttl_heartbeat(check_id, status, body.Output.replace("\x00", "")[:1024])
    return done()
