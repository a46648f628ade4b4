"""Registry routes: queries answered by the discovery worker, changes published as events."""

from __future__ import annotations

from quart import Blueprint, Response

from bus.errors import NotFound, Unavailable
from http_edge._context import call, endpoint, json_body, json_response, path_param, publish, query
from http_edge.models import (
    INSTANCE_ID,
    SERVICE_NAME,
    Accepted,
    HeartbeatBody,
    InstanceAction,
    PickQuery,
    RegisterBody,
    ServiceQuery,
    pairs_to_dict,
)
from schemas.registry import Deregister, Drain, Heartbeat, Register
from schemas.rpc import (
    InstanceRequest,
    InstanceView,
    PickRequest,
    ServiceRequest,
    ServicesRequest,
    ServicesView,
    ServiceView,
)

blueprint = Blueprint("registry", __name__)

READ = "registry:read"
WRITE = "registry:write"


def _freshness(view: ServicesView | ServiceView | InstanceView) -> dict[str, str]:
    return {
        "X-Govbus-Index": str(view.index),
        "X-Govbus-Protection": "1" if view.protection else "0",
    }


@blueprint.get("/v1/services")
@endpoint(READ)
async def services() -> Response:
    view = await call("discovery.services", ServicesRequest(), ServicesView)
    return json_response(view, headers=_freshness(view))


@blueprint.get("/v1/services/<name>")
@endpoint(READ)
async def service(name: str) -> Response:
    name = path_param(SERVICE_NAME, "name", name)
    q = query(ServiceQuery)
    params = ServiceRequest(
        name=name, passing_only=q.passing, tag=q.tag, meta=pairs_to_dict(q.meta)
    )
    view = await call("discovery.service", params, ServiceView)
    return json_response(view, headers=_freshness(view))


@blueprint.get("/v1/services/<name>/pick")
@endpoint(READ)
async def pick(name: str) -> Response:
    name = path_param(SERVICE_NAME, "name", name)
    q = query(PickQuery)
    try:
        view = await call(
            "discovery.pick",
            PickRequest(service=name, strategy=q.strategy, tag=q.tag),
            InstanceView,
        )
    except Unavailable as exc:
        # The worker answered: a service with no instance at all is unknown here (404);
        # one whose instances are all unhealthy or draining stays 503, worth a retry.
        if type(exc) is Unavailable and exc.details.get("statuses") == {}:
            raise NotFound(exc.message, exc.details) from exc
        raise
    return json_response(view.instance, headers=_freshness(view))


@blueprint.post("/v1/instances")
@endpoint(WRITE)
async def register() -> Response:
    body = await json_body(RegisterBody)
    event = Register.model_validate(body.model_dump())
    event_id = await publish(event)
    accepted = Accepted(type=Register.TYPE, event_id=event_id, instance_id=event.instance_id)
    return json_response(accepted, 202, {"Location": f"/v1/services/{event.service}"})


async def _service_of(instance_id: str, given: str | None) -> str:
    if given is not None:
        return given
    view = await call("discovery.instance", InstanceRequest(instance_id=instance_id), InstanceView)
    return view.instance.service


@blueprint.put("/v1/instances/<instance_id>/heartbeat")
@endpoint(WRITE)
async def heartbeat(instance_id: str) -> Response:
    instance_id = path_param(INSTANCE_ID, "instance_id", instance_id)
    body = await json_body(HeartbeatBody, optional=True)
    service_name = await _service_of(instance_id, body.service)
    event = Heartbeat(
        service=service_name,
        instance_id=instance_id,
        status=body.status,
        note=body.note,
        load=body.load,
    )
    event_id = await publish(event)
    return json_response(
        Accepted(type=Heartbeat.TYPE, event_id=event_id, instance_id=instance_id), 202
    )


@blueprint.put("/v1/instances/<instance_id>/drain")
@endpoint(WRITE)
async def drain(instance_id: str) -> Response:
    instance_id = path_param(INSTANCE_ID, "instance_id", instance_id)
    q = query(InstanceAction)
    event = Drain(service=await _service_of(instance_id, q.service), instance_id=instance_id)
    event_id = await publish(event)
    return json_response(Accepted(type=Drain.TYPE, event_id=event_id, instance_id=instance_id), 202)


@blueprint.delete("/v1/instances/<instance_id>")
@endpoint(WRITE)
async def deregister(instance_id: str) -> Response:
    instance_id = path_param(INSTANCE_ID, "instance_id", instance_id)
    q = query(InstanceAction)
    event = Deregister(service=await _service_of(instance_id, q.service), instance_id=instance_id)
    event_id = await publish(event)
    return json_response(
        Accepted(type=Deregister.TYPE, event_id=event_id, instance_id=instance_id), 202
    )
