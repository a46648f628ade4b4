"""Consul's answer shapes (Go's field names, as `api/catalog.go`, `api/health.go` and
`api/agent.go` have them) and the query strings of its reads; how a govbus instance becomes
one of them (`catalog_service`, `service_entry`, `agent_service`).

govbus has no nodes: each instance is its own node, named by its address, with the
instance's meta as the node's meta (so `?node-meta=k:v` filters on the instance's meta).
"""

from __future__ import annotations

import functools
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from http_edge._consul_body import TTL_CHECK_META
from http_edge.models import Index, Wait
from schemas import Tag
from schemas.registry import Instance

CONSUL_VERSION = "1.20.0"
"""The Consul release whose HTTP API the edge answers like (`/v1/agent/self`)."""

MAINTENANCE_PREFIX = "_service_maintenance:"

_TRUE = {"", "1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}
_NODE_META = re.compile(r"[A-Za-z0-9_.-]{1,128}:[\x20-\x7e]{0,512}")


def _flag(value: object) -> bool:
    """Consul's flags: present without a value (`?stale`) or with one (`?passing=1`)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise PydanticCustomError("flag", "must be empty (present), 1/0 or true/false")


Flag = Annotated[
    bool,
    BeforeValidator(_flag),
    WithJsonSchema({"type": "string", "enum": ["", "1", "0", "true", "false"]}),
]


def _node_meta(values: list[str]) -> list[str]:
    for value in values:
        if not _NODE_META.fullmatch(value):
            raise PydanticCustomError("node_meta", "must be KEY:VALUE")
    return values


NodeMeta = Annotated[
    list[str],
    Field(max_length=64),
    AfterValidator(_node_meta),
    WithJsonSchema(
        {
            "type": "array",
            "maxItems": 64,
            "items": {"type": "string", "pattern": f"^{_NODE_META.pattern}$"},
        }
    ),
]
"""Repeated `?node-meta=KEY:VALUE`: the instance's meta must hold every pair."""

Datacenter = Annotated[str, Field(min_length=1, max_length=63)]


class AgentQuery(BaseModel):
    """The agent's own lists take no parameter govbus can honour (`filter` expressions,
    namespaces): any is a 422 naming it, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class ConsulQuery(BaseModel):
    """What every Consul read takes: a blocking read (`index`, `wait`: default 5 minutes, at
    most 10), consistency flags, `dc` and `node-meta`. `near` is taken and ignored (no
    network coordinates)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    index: Index | None = None
    wait: Wait = 300.0
    stale: Flag = False
    consistent: Flag = False
    cached: Flag = False
    dc: Datacenter | None = None
    node_meta: NodeMeta = Field(default=[], alias="node-meta")
    near: Annotated[str, Field(max_length=128)] | None = None

    def meta_pairs(self) -> dict[str, str]:
        return dict(value.split(":", 1) for value in self.node_meta)

    def blocking_index(self) -> int | None:
        """The index to pass, or None: Consul reads `index=0` as not blocking."""
        return self.index or None


class CatalogQuery(ConsulQuery):
    """`/v1/catalog/service/<name>`: `tag` repeated means every one of them."""

    tag: Annotated[list[Tag], Field(max_length=32)] = []


class HealthQuery(CatalogQuery):
    """`/v1/health/service/<name>`: `passing` keeps instances whose checks all pass."""

    passing: Flag = False


class MaintenanceQuery(BaseModel):
    """`PUT /v1/agent/service/maintenance/<id>?enable=true|false&reason=`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enable: Annotated[bool, WithJsonSchema({"type": "string", "enum": ["true", "false"]})]
    reason: Annotated[str, Field(max_length=256)] = ""


# --- answers ---------------------------------------------------------------------------------


class Weights(BaseModel):
    Passing: int
    Warning: int


class HealthCheck(BaseModel):
    """`api.HealthCheck`."""

    Node: str
    CheckID: str
    Name: str
    Status: Literal["passing", "warning", "critical"]
    Notes: str = ""
    Output: str = ""
    ServiceID: str
    ServiceName: str
    ServiceTags: list[str]
    Type: str
    Namespace: str = "default"
    CreateIndex: int
    ModifyIndex: int


class Node(BaseModel):
    """`api.Node`: the instance as its own node."""

    ID: str
    Node: str
    Address: str
    Datacenter: str
    TaggedAddresses: dict[str, str]
    Meta: dict[str, str]
    CreateIndex: int
    ModifyIndex: int


class AgentService(BaseModel):
    """`api.AgentService`."""

    Kind: str = ""
    ID: str
    Service: str
    Tags: list[str]
    Meta: dict[str, str]
    Port: int
    Address: str
    TaggedAddresses: dict[str, Any] = {}
    Weights: Weights
    EnableTagOverride: bool = False
    CreateIndex: int
    ModifyIndex: int
    Datacenter: str
    Namespace: str = "default"


class ServiceEntry(BaseModel):
    """`api.ServiceEntry`: one item of `/v1/health/service/<name>`."""

    Node: Node
    Service: AgentService
    Checks: list[HealthCheck]


class CatalogService(BaseModel):
    """`api.CatalogService`: one item of `/v1/catalog/service/<name>`."""

    ID: str
    Node: str
    Address: str
    Datacenter: str
    TaggedAddresses: dict[str, str]
    NodeMeta: dict[str, str]
    ServiceID: str
    ServiceName: str
    ServiceAddress: str
    ServiceTags: list[str]
    ServiceMeta: dict[str, str]
    ServicePort: int
    ServiceWeights: Weights
    ServiceEnableTagOverride: bool = False
    Namespace: str = "default"
    CreateIndex: int
    ModifyIndex: int


class AgentConfig(BaseModel):
    Datacenter: str
    PrimaryDatacenter: str
    NodeName: str
    NodeID: str
    Server: bool
    Revision: str
    Version: str


class AgentMember(BaseModel):
    Name: str
    Addr: str
    Port: int
    Tags: dict[str, str]
    Status: int


class AgentSelf(BaseModel):
    """`/v1/agent/self`: enough of it for clients that read the datacenter and node."""

    Config: AgentConfig
    Member: AgentMember
    Meta: dict[str, str]


# --- govbus -> Consul ------------------------------------------------------------------------
# Plain dicts in the shapes above (building the models costs 3x more per answer); the unit
# tests validate them against the models, which `/openapi.json` documents.

Json = dict[str, Any]


@functools.lru_cache(maxsize=4096)
def node_id(name: str) -> str:
    """A stable UUID for a node name (Consul's node ids are UUIDs)."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.govbus"))


def node_of(instance: Instance, dc: str, index: int) -> Json:
    """`Node`: the instance as its own node."""
    address = instance.address
    return {
        "ID": node_id(address),
        "Node": address,
        "Address": address,
        "Datacenter": dc,
        "TaggedAddresses": {"lan": address, "wan": address},
        "Meta": dict(instance.meta),
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def agent_service(instance: Instance, dc: str, index: int) -> Json:
    """`AgentService`."""
    return {
        "Kind": "",
        "ID": instance.instance_id,
        "Service": instance.service,
        "Tags": list(instance.tags),
        "Meta": dict(instance.meta),
        "Port": instance.port,
        "Address": instance.address,
        "TaggedAddresses": {},
        "Weights": {"Passing": instance.weight, "Warning": 1},
        "EnableTagOverride": False,
        "CreateIndex": index,
        "ModifyIndex": index,
        "Datacenter": dc,
        "Namespace": "default",
    }


def checks_of(instance: Instance, index: int) -> list[Json]:
    """`HealthCheck`s: the instance's own status as the check `service:<id>` (or its TTL
    check's own id), a draining instance as Consul's maintenance check instead, then each of
    its active checks."""
    base = {
        "Node": instance.address,
        "ServiceID": instance.instance_id,
        "ServiceName": instance.service,
        "ServiceTags": list(instance.tags),
        "Namespace": "default",
        "CreateIndex": index,
        "ModifyIndex": index,
    }
    if instance.status == "draining":
        own = {
            "CheckID": f"{MAINTENANCE_PREFIX}{instance.instance_id}",
            "Name": "Service Maintenance Mode",
            "Status": "critical",
            "Notes": "draining: it takes no new work",
            "Output": "",
            "Type": "maintenance",
        }
    else:
        own = {
            "CheckID": instance.meta.get(TTL_CHECK_META) or f"service:{instance.instance_id}",
            "Name": f"Service '{instance.service}' check",
            "Status": instance.status,
            "Notes": "",
            "Output": instance.note,
            "Type": "ttl" if instance.ttl_s > 0 else "",
        }
    found = [{**base, **own}]
    for number, state in enumerate(instance.checks, 1):
        check_id = state.check.id or f"check-{number}"
        found.append(
            {
                **base,
                "CheckID": check_id,
                "Name": check_id,
                "Status": state.status,
                "Notes": "",
                "Output": state.output,
                "Type": state.check.kind,
            }
        )
    return found


def service_entry(instance: Instance, dc: str, index: int) -> Json:
    """`ServiceEntry`: one item of `/v1/health/service/<name>`."""
    return {
        "Node": node_of(instance, dc, index),
        "Service": agent_service(instance, dc, index),
        "Checks": checks_of(instance, index),
    }


def catalog_service(instance: Instance, dc: str, index: int) -> Json:
    """`CatalogService`: one item of `/v1/catalog/service/<name>`."""
    address = instance.address
    return {
        "ID": node_id(address),
        "Node": address,
        "Address": address,
        "Datacenter": dc,
        "TaggedAddresses": {"lan": address, "wan": address},
        "NodeMeta": dict(instance.meta),
        "ServiceID": instance.instance_id,
        "ServiceName": instance.service,
        "ServiceAddress": address,
        "ServiceTags": list(instance.tags),
        "ServiceMeta": dict(instance.meta),
        "ServicePort": instance.port,
        "ServiceWeights": {"Passing": instance.weight, "Warning": 1},
        "ServiceEnableTagOverride": False,
        "Namespace": "default",
        "CreateIndex": index,
        "ModifyIndex": index,
    }


def admitted(instance: Instance, query: CatalogQuery) -> bool:
    """Every `tag` among its tags, every `node-meta` pair in its meta."""
    return all(t in instance.tags for t in query.tag) and all(
        instance.meta.get(k) == v for k, v in query.meta_pairs().items()
    )
