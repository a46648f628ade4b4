"""Consul's reads (catalog, health, agent) and its service maintenance, on govbus's registry.

`GET /v1/catalog/services`, `/v1/catalog/service/<name>`, `/v1/health/service/<name>`,
`/v1/health/checks/<name>`, `/v1/health/state/<state>`, `/v1/agent/self`,
`/v1/agent/services`, `/v1/agent/service/<id>`, `/v1/status/leader|peers`, and
`PUT /v1/agent/service/maintenance/<id>` (a drain, or a re-registration that ends it).
Service reads come through the edge's cache and block as Consul's do (`?index=N&wait=5m`, one
index per service); `X-Consul-Index` is the index to pass back. Each instance is its own node
(`_consul_models`). A `dc` other than this edge's datacenter is a 404 naming it.
"""

from __future__ import annotations

from typing import Literal

from pydantic_core import to_json
from quart import Response, g, request

from bus.errors import NotFound
from http_edge._consul_models import (
    CONSUL_VERSION,
    AgentConfig,
    AgentMember,
    AgentQuery,
    AgentSelf,
    AgentService,
    CatalogQuery,
    CatalogService,
    ConsulQuery,
    HealthCheck,
    HealthQuery,
    MaintenanceQuery,
    ServiceEntry,
    admitted,
    agent_service,
    catalog_service,
    checks_of,
    node_id,
    service_entry,
)
from http_edge._context import JSON, call, edge, publish
from http_edge.api import Answer, Api
from http_edge.cache import index_of
from http_edge.consul import CONSUL_HEADERS, DONE, WRITE, consul_headers, done
from http_edge.problems import Problem
from schemas import InstanceId, ServiceName
from schemas.registry import Drain, Instance, Register
from schemas.rpc import (
    InstanceRequest,
    InstanceView,
    RegistryView,
    ServiceView,
    StateRequest,
)

api = Api("consul-read", acl=True)
api.blueprint.after_request(consul_headers)

READ = "registry:read"


def _answer(body: object, description: str = "ok") -> Answer:
    return Answer(body, 200, description, headers=CONSUL_HEADERS)


def _json(data: object) -> Response:
    return Response(to_json(data), status=200, content_type=JSON)


def _check_dc(query: ConsulQuery) -> str:
    here = edge().datacenter
    if query.dc is not None and query.dc.lower() != here:  # names are case-blind in DNS
        raise Problem(
            404,
            f"no path to datacenter {query.dc!r}: this is datacenter {here!r}",
            slug="not-found",
        )
    return here


async def _service_view(name: str, query: ConsulQuery) -> ServiceView | None:
    """The service as the cache has it (blocking with `index`), or None when unknown; sets
    the answer's index either way."""
    try:
        view = await edge().cache.service(
            name,
            index=query.blocking_index(),
            wait_s=query.wait,
            consistent=query.consistent,
            traceparent=g.traceparent,
        )
    except NotFound as exc:
        g.consul_index = index_of(exc)
        return None
    g.consul_index = view.index
    return view


async def _state(query: ConsulQuery) -> RegistryView:
    """Every instance; with `index`, once the registry's index passes it (or `wait`)."""
    index = query.blocking_index()
    if index is not None:
        await edge().cache.services(index=index, wait_s=query.wait, traceparent=g.traceparent)
    view = await call("discovery.state", StateRequest(), RegistryView)
    g.consul_index = view.index
    return view


def _index() -> int:
    return max(1, int(g.get("consul_index", 1)))


@api.get(
    "/v1/agent/self",
    "The agent's configuration and member (Consul's shape; govbus is one server). Public: "
    "py-consul asks it without a token, and it names only the datacenter and the node",
    ok=_answer(AgentSelf),
)
async def consul_agent_self() -> Response:
    state = edge()
    name = state.node_name
    return _json(
        AgentSelf(
            Config=AgentConfig(
                Datacenter=state.datacenter,
                PrimaryDatacenter=state.datacenter,
                NodeName=name,
                NodeID=node_id(name),
                Server=True,
                Revision="govbus",
                Version=CONSUL_VERSION,
            ),
            Member=AgentMember(Name=name, Addr="127.0.0.1", Port=8301, Tags={}, Status=1),
            Meta={"govbus": "true"},
        )
    )


@api.get(
    "/v1/catalog/services",
    "Every service and its tags (`{name: [tags]}`)",
    scope=READ,
    query=ConsulQuery,
    ok=_answer(dict[str, list[str]]),
    raises=(404,),
    bus=True,
)
async def consul_catalog_services(query: ConsulQuery) -> Response:
    _check_dc(query)
    if query.node_meta:
        state = await _state(query)
        wanted = CatalogQuery(**{"node-meta": query.node_meta})
        found: dict[str, list[str]] = {}
        for instance in state.instances:
            if admitted(instance, wanted):
                tags = found.setdefault(instance.service, [])
                tags += [t for t in instance.tags if t not in tags]
        return _json(found)
    view = await edge().cache.services(
        index=query.blocking_index(),
        wait_s=query.wait,
        consistent=query.consistent,
        traceparent=g.traceparent,
    )
    g.consul_index = view.index
    return _json({s.service: list(s.tags) for s in view.services})


@api.get(
    "/v1/catalog/service/<name>",
    "The instances of one service, as Consul's catalog lists them ([] when unknown)",
    scope=READ,
    path={"name": ServiceName},
    query=CatalogQuery,
    ok=_answer(list[CatalogService]),
    raises=(404,),
    bus=True,
)
async def consul_catalog_service(name: str, query: CatalogQuery) -> Response:
    dc = _check_dc(query)
    view = await _service_view(name, query)
    if view is None:
        return _json([])
    index = _index()
    return _json([catalog_service(i, dc, index) for i in view.instances if admitted(i, query)])


@api.get(
    "/v1/health/service/<name>",
    "The instances of one service with their checks ([] when unknown)",
    scope=READ,
    path={"name": ServiceName},
    query=HealthQuery,
    ok=_answer(list[ServiceEntry]),
    raises=(404,),
    bus=True,
)
async def consul_health_service(name: str, query: HealthQuery) -> Response:
    dc = _check_dc(query)
    view = await _service_view(name, query)
    if view is None:
        return _json([])
    index = _index()
    entries = [service_entry(i, dc, index) for i in view.instances if admitted(i, query)]
    if query.passing:
        entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
    return _json(entries)


@api.get(
    "/v1/health/checks/<name>",
    "The checks of one service's instances ([] when unknown)",
    scope=READ,
    path={"name": ServiceName},
    query=ConsulQuery,
    ok=_answer(list[HealthCheck]),
    raises=(404,),
    bus=True,
)
async def consul_health_checks(name: str, query: ConsulQuery) -> Response:
    _check_dc(query)
    view = await _service_view(name, query)
    if view is None:
        return _json([])
    index = _index()
    wanted = CatalogQuery(**{"node-meta": query.node_meta})
    return _json([c for i in view.instances if admitted(i, wanted) for c in checks_of(i, index)])


@api.get(
    "/v1/health/state/<state>",
    "Every check in a state (any, passing, warning or critical)",
    scope=READ,
    path={"state": Literal["any", "passing", "warning", "critical"]},
    query=ConsulQuery,
    ok=_answer(list[HealthCheck]),
    raises=(404,),
    bus=True,
)
async def consul_health_state(state: str, query: ConsulQuery) -> Response:
    _check_dc(query)
    view = await _state(query)
    index = _index()
    wanted = CatalogQuery(**{"node-meta": query.node_meta})
    checks = [
        check
        for instance in view.instances
        if admitted(instance, wanted)
        for check in checks_of(instance, index)
        if state in ("any", check["Status"])
    ]
    return _json(checks)


@api.get(
    "/v1/agent/services",
    "Every registered instance by id (govbus's agent knows them all)",
    scope=READ,
    query=AgentQuery,
    ok=_answer(dict[str, AgentService]),
    bus=True,
)
async def consul_agent_services(query: AgentQuery) -> Response:
    view = await call("discovery.state", StateRequest(), RegistryView)
    g.consul_index = view.index
    dc = edge().datacenter
    return _json({i.instance_id: agent_service(i, dc, _index()) for i in view.instances})


async def _instance(instance_id: str) -> Instance:
    view = await call("discovery.instance", InstanceRequest(instance_id=instance_id), InstanceView)
    g.consul_index = view.index
    return view.instance


@api.get(
    "/v1/agent/service/<service_id>",
    "One registered instance",
    scope=READ,
    path={"service_id": InstanceId},
    query=AgentQuery,
    ok=_answer(AgentService),
    raises=(404,),
    bus=True,
)
async def consul_agent_service(service_id: str, query: AgentQuery) -> Response:
    instance = await _instance(service_id)
    return _json(agent_service(instance, edge().datacenter, _index()))


@api.put(
    "/v1/agent/service/maintenance/<service_id>",
    "Maintenance: enable drains the instance (registry.drain); disable registers it again "
    "as it is (registry.register), which ends a drain",
    scope=WRITE,
    path={"service_id": InstanceId},
    query=MaintenanceQuery,
    ok=DONE,
    raises=(404,),
    bus=True,
)
async def consul_maintenance(service_id: str, query: MaintenanceQuery) -> Response:
    instance = await _instance(service_id)
    if query.enable:
        await publish(Drain(service=instance.service, instance_id=service_id))
    else:
        # Even when it does not look draining: a drain just asked may not be applied yet.
        await publish(
            Register(
                service=instance.service,
                instance_id=service_id,
                address=instance.address,
                port=instance.port,
                tags=instance.tags,
                meta=instance.meta,
                ttl_s=instance.ttl_s,
                deregister_after_s=instance.deregister_after_s,
                weight=instance.weight,
                checks=[state.check for state in instance.checks],
            )
        )
    return done()


@api.get(
    "/v1/status/leader",
    "The Raft leader's address, as Consul answers it: this edge (govbus has no Raft)",
    ok=_answer(str),
)
async def consul_status_leader() -> Response:
    return _json(request.host)


@api.get(
    "/v1/status/peers",
    "The Raft peers, as Consul answers them: this edge alone",
    ok=_answer(list[str]),
)
async def consul_status_peers() -> Response:
    return _json([request.host])
