"""Registry routes: queries answered by the discovery worker, changes published as events.

The two reads (`/v1/services`, `/v1/services/<name>`) come through the edge's cache
(`http_edge.cache`) and block with `?index=N&wait=…`; `?consistent=1` asks the worker.
"""

from __future__ import annotations

from quart import Response, g

from bus.errors import NotFound, Unavailable
from http_edge._context import call, edge, json_response, publish
from http_edge.api import Answer, Api
from http_edge.cache import index_of
from http_edge.models import (
    Accepted,
    Blocking,
    HeartbeatBody,
    InstanceAction,
    PickQuery,
    RegisterBody,
    ServiceQuery,
    pairs_to_dict,
)
from http_edge.problems import from_bus_error
from schemas import InstanceId, ServiceName
from schemas.registry import Deregister, Drain, Heartbeat, Instance, Register
from schemas.rpc import (
    InstanceRequest,
    InstanceView,
    PickRequest,
    ServiceRequest,
    ServicesView,
    ServiceView,
)

api = Api("registry")

READ = "registry:read"
WRITE = "registry:write"

FRESHNESS = {
    "X-Govbus-Index": "the index this answer reflects (a service's own for one service)",
    "X-Govbus-Protection": "1 while expiry protection is on, else 0",
}
ACCEPTED = Answer(Accepted, 202, "the event was confirmed by the broker")


def _freshness(view: ServicesView | ServiceView | InstanceView) -> dict[str, str]:
    return {
        "X-Govbus-Index": str(view.index),
        "X-Govbus-Protection": "1" if view.protection else "0",
    }


@api.get(
    "/v1/services",
    "Every service, summarised",
    scope=READ,
    query=Blocking,
    ok=Answer(ServicesView, headers=FRESHNESS),
    bus=True,
)
async def services(query: Blocking) -> Response:
    view = await edge().cache.services(
        index=query.index,
        wait_s=query.wait,
        consistent=query.consistent,
        traceparent=g.traceparent,
    )
    return json_response(view, headers=_freshness(view))


@api.get(
    "/v1/services/<name>",
    "The instances of one service",
    scope=READ,
    path={"name": ServiceName},
    query=ServiceQuery,
    ok=Answer(ServiceView, headers=FRESHNESS),
    raises=(404,),
    bus=True,
)
async def service(name: str, query: ServiceQuery) -> Response:
    cache = edge().cache
    try:
        view = await cache.service(
            name,
            index=query.index,
            wait_s=query.wait,
            consistent=query.consistent,
            traceparent=g.traceparent,
        )
    except NotFound as exc:
        # Its index too: a reader may block until the service comes (`?index=` of this one).
        problem = from_bus_error(exc)
        problem.headers["X-Govbus-Index"] = str(index_of(exc))
        raise problem from None
    if not (query.passing or query.tag is not None or query.meta):
        # The whole answer, as cached: encoded once for every read of it.
        body = cache.encoded(view)
        return Response(body, headers=_freshness(view), content_type="application/json")
    wanted = ServiceRequest(
        name=name, passing_only=query.passing, tag=query.tag, meta=pairs_to_dict(query.meta)
    )
    chosen = [i for i in view.instances if wanted.admits(i.status, i.tags, i.meta)]
    if len(chosen) != len(view.instances):
        view = view.model_copy(update={"instances": chosen})
    return json_response(view, headers=_freshness(view))


@api.get(
    "/v1/services/<name>/pick",
    "One instance, load-balanced",
    scope=READ,
    path={"name": ServiceName},
    query=PickQuery,
    ok=Answer(Instance, headers=FRESHNESS),
    raises=(404,),
    bus=True,
)
async def pick(name: str, query: PickQuery) -> Response:
    try:
        view = await call(
            "discovery.pick",
            PickRequest(service=name, strategy=query.strategy, tag=query.tag),
            InstanceView,
        )
    except Unavailable as exc:
        # The worker answered: a service with no instance at all is unknown here (404);
        # one whose instances are all unhealthy or draining stays 503, worth a retry.
        if type(exc) is Unavailable and exc.details.get("statuses") == {}:
            raise NotFound(exc.message, exc.details) from exc
        raise
    return json_response(view.instance, headers=_freshness(view))


@api.post(
    "/v1/instances",
    "Register an instance (publishes registry.register)",
    scope=WRITE,
    body=RegisterBody,
    ok=Answer(Accepted, 202, ACCEPTED.description, headers={"Location": "the service"}),
    bus=True,
)
async def register(body: RegisterBody) -> Response:
    event = Register.model_validate(body.model_dump())
    event_id = await publish(event)
    accepted = Accepted(type=Register.TYPE, event_id=event_id, instance_id=event.instance_id)
    return json_response(accepted, 202, {"Location": f"/v1/services/{event.service}"})


async def _service_of(instance_id: str, given: str | None) -> str:
    if given is not None:
        return given
    view = await call("discovery.instance", InstanceRequest(instance_id=instance_id), InstanceView)
    return view.instance.service


@api.put(
    "/v1/instances/<instance_id>/heartbeat",
    "Heartbeat (publishes registry.heartbeat); the body may be left out",
    scope=WRITE,
    path={"instance_id": InstanceId},
    body=HeartbeatBody,
    body_required=False,
    ok=ACCEPTED,
    raises=(404,),
    bus=True,
)
async def heartbeat(instance_id: str, body: HeartbeatBody) -> Response:
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


@api.put(
    "/v1/instances/<instance_id>/drain",
    "Drain (publishes registry.drain)",
    scope=WRITE,
    path={"instance_id": InstanceId},
    query=InstanceAction,
    ok=ACCEPTED,
    raises=(404,),
    bus=True,
)
async def drain(instance_id: str, query: InstanceAction) -> Response:
    event = Drain(service=await _service_of(instance_id, query.service), instance_id=instance_id)
    event_id = await publish(event)
    return json_response(Accepted(type=Drain.TYPE, event_id=event_id, instance_id=instance_id), 202)


@api.delete(
    "/v1/instances/<instance_id>",
    "Deregister (publishes registry.deregister)",
    scope=WRITE,
    path={"instance_id": InstanceId},
    query=InstanceAction,
    ok=ACCEPTED,
    raises=(404,),
    bus=True,
)
async def deregister(instance_id: str, query: InstanceAction) -> Response:
    service_name = await _service_of(instance_id, query.service)
    event = Deregister(service=service_name, instance_id=instance_id)
    event_id = await publish(event)
    return json_response(
        Accepted(type=Deregister.TYPE, event_id=event_id, instance_id=instance_id), 202
    )
