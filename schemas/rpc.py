"""Request and reply models of every RPC method, and the table that pairs them.

A request goes to `govbus.rpc` with the method as routing key and the request model as JSON
body; the reply body is the reply model (header `x-govbus-status: ok`) or an `ErrorBody`.
Replies that are a bare resource use `ResourceReply`, a root model whose JSON is the flat
resource itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from ._base import Reply, Request
from ._types import (
    InstanceId,
    Labels,
    Meta,
    ResourceKind,
    ResourceName,
    ResourceStatus,
    ServiceName,
    Strategy,
    Tag,
)
from .registry import Instance
from .resources import Resource, ResourcePatch, ResourceSpec

__all__ = [
    "RPC_CONTRACT",
    "CreateResourceRequest",
    "DeleteReply",
    "DeleteResourceRequest",
    "ErrorBody",
    "ErrorCode",
    "InstanceRequest",
    "InstanceView",
    "PickRequest",
    "RegistryView",
    "ResourcePage",
    "ResourceReply",
    "ResourceRequest",
    "ResourcesRequest",
    "ServiceRequest",
    "ServiceSummary",
    "ServiceView",
    "ServicesRequest",
    "ServicesView",
    "StateRequest",
    "UpdateResourceRequest",
]

Count = Annotated[int, Field(ge=0)]
Version = Annotated[int, Field(ge=1)]


class _RegistryAnswer(Reply):
    """Every registry answer says how fresh (`index`) and how trustworthy (`protection`) it is."""

    index: Count
    protection: bool


# --- discovery -----------------------------------------------------------------------------------


class ServicesRequest(Request):
    """`discovery.services`: a summary of every service."""


class ServiceSummary(Reply):
    service: ServiceName
    instances: Count
    passing: Count
    warning: Count
    critical: Count
    draining: Count
    tags: list[str] = []


class ServicesView(_RegistryAnswer):
    services: list[ServiceSummary]


class ServiceRequest(Request):
    """`discovery.service`: the instances of one service, filtered.

    `tag` keeps instances carrying that tag; `meta` keeps instances whose meta has every
    given pair.
    """

    name: ServiceName
    passing_only: bool = False
    tag: Tag | None = None
    meta: Meta = {}

    def admits(self, status: str, tags: Sequence[str], meta: Mapping[str, str] | None) -> bool:
        """Whether an instance with these passes the filters (the worker's and the edge's
        cache's one rule)."""
        return (
            (not self.passing_only or status == "passing")
            and (self.tag is None or self.tag in tags)
            and all((meta or {}).get(k) == v for k, v in self.meta.items())
        )


class ServiceView(_RegistryAnswer):
    """`index` is the service's own: the registry index of its last change that an answer
    shows (an instance added, removed, changed or changing status), not of heartbeat times."""

    service: ServiceName
    instances: list[Instance]


class InstanceRequest(Request):
    """`discovery.instance`: one instance by id."""

    instance_id: InstanceId


class InstanceView(_RegistryAnswer):
    """The answer of `discovery.instance` and `discovery.pick`."""

    instance: Instance


class PickRequest(Request):
    """`discovery.pick`: one instance of a service, load-balanced (draining ones excluded)."""

    service: ServiceName
    strategy: Strategy = "round_robin"
    tag: Tag | None = None


class StateRequest(Request):
    """`discovery.state`: the whole registry with its index."""


class RegistryView(_RegistryAnswer):
    instances: list[Instance]


# --- manager -------------------------------------------------------------------------------------


class ResourcesRequest(Request):
    """`manager.resources`: a page of resources; `label` keeps those having every given pair."""

    kind: ResourceKind | None = None
    status: ResourceStatus | None = None
    label: Labels = {}
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class ResourcePage(Reply):
    items: list[Resource]
    next: str | None = None


class ResourceRequest(Request):
    """`manager.resource`: one resource by name."""

    name: ResourceName


class ResourceReply(RootModel[Resource]):
    """A bare resource as a reply: its JSON is the flat resource object."""

    model_config = ConfigDict(frozen=True)


class CreateResourceRequest(Request):
    """`manager.create`: the spec of the resource to create."""

    spec: ResourceSpec


class UpdateResourceRequest(Request):
    """`manager.update`: change some fields if the resource is still at `expected_version`.

    `changes` accepts any patchable field of any kind; the manager then checks them against
    the resource's kind with `schemas.validate_patch`. A stale version is a `conflict`.
    """

    name: ResourceName
    expected_version: Version
    changes: ResourcePatch


class DeleteResourceRequest(Request):
    """`manager.delete`: delete by name; with `expected_version`, only if still at it."""

    name: ResourceName
    expected_version: Version | None = None


class DeleteReply(Reply):
    name: ResourceName
    deleted: Literal[True] = True
    version: Version


# --- errors --------------------------------------------------------------------------------------

ErrorCode = Literal["not_found", "invalid", "conflict", "unavailable", "internal", "timeout"]


class ErrorBody(Reply):
    """The body of a reply whose `x-govbus-status` is not `ok`.

    An `invalid` one names each bad field in `details.errors`: `[{"field", "message"}]`.
    """

    code: ErrorCode
    message: str
    details: dict[str, Any] = {}


# --- the table -----------------------------------------------------------------------------------

RPC_CONTRACT: dict[str, tuple[type[Request], type[BaseModel]]] = {
    "discovery.services": (ServicesRequest, ServicesView),
    "discovery.service": (ServiceRequest, ServiceView),
    "discovery.instance": (InstanceRequest, InstanceView),
    "discovery.pick": (PickRequest, InstanceView),
    "discovery.state": (StateRequest, RegistryView),
    "manager.resources": (ResourcesRequest, ResourcePage),
    "manager.resource": (ResourceRequest, ResourceReply),
    "manager.create": (CreateResourceRequest, ResourceReply),
    "manager.update": (UpdateResourceRequest, ResourceReply),
    "manager.delete": (DeleteResourceRequest, DeleteReply),
}
"""The RPC contract: method name (the routing key on `govbus.rpc`) -> (request model, reply
model). Each worker builds its own `RPC_METHODS` table (with handlers) from it."""
