"""The answers of the `discovery.*` methods, built from the registry.

Every answer carries the registry `index` and whether expiry protection is on.
"""

from __future__ import annotations

from bus.errors import NotFound
from schemas import (
    InstanceRequest,
    InstanceView,
    PickRequest,
    RegistryView,
    ServiceRequest,
    ServicesRequest,
    ServiceSummary,
    ServicesView,
    ServiceView,
    StateRequest,
)

from ._entry import instance_view
from .context import Context


async def services(request: ServicesRequest, *, ctx: Context) -> ServicesView:
    """`discovery.services`: one summary per service, by name."""
    registry = ctx.registry
    summaries = []
    for name in sorted(registry.by_service):
        group = registry.by_service[name].values()
        counts = {"passing": 0, "warning": 0, "critical": 0, "draining": 0}
        tags: set[str] = set()
        for entry in group:
            counts[entry.status] += 1
            tags.update(entry.tags)
        summaries.append(
            ServiceSummary(service=name, instances=len(group), tags=sorted(tags), **counts)
        )
    return ServicesView(
        index=registry.indexes.listed, protection=registry.protection, services=summaries
    )


async def service(request: ServiceRequest, *, ctx: Context) -> ServiceView:
    """`discovery.service`: the instances of one service, filtered; `not_found` if unknown.

    Its `index` is the service's own (`indexes`): what a blocking read of it waits on; a
    `not_found` carries it too (in `details`), so a reader can wait for the service to come."""
    registry = ctx.registry
    index = registry.indexes.of(request.name)
    group = registry.by_service.get(request.name)
    if group is None:
        details = {"service": request.name, "index": index}
        raise NotFound(f"no service {request.name!r} is registered", details)
    chosen = [
        instance_view(entry)
        for _, entry in sorted(group.items())
        if request.admits(entry.status, entry.tags, entry.meta)
    ]
    return ServiceView(
        index=index,
        protection=registry.protection,
        service=request.name,
        instances=chosen,
    )


async def instance(request: InstanceRequest, *, ctx: Context) -> InstanceView:
    """`discovery.instance`: one instance by id; `not_found` if unknown."""
    registry = ctx.registry
    entry = registry.instances.get(request.instance_id)
    if entry is None:
        raise NotFound(
            f"no instance {request.instance_id!r} is registered",
            {"instance_id": request.instance_id},
        )
    return InstanceView(
        index=registry.index, protection=registry.protection, instance=instance_view(entry)
    )


async def pick(request: PickRequest, *, ctx: Context) -> InstanceView:
    """`discovery.pick`: one instance, load-balanced; `unavailable` when none may be picked."""
    entry = ctx.balancer.pick(request.service, request.strategy, request.tag)
    registry = ctx.registry
    return InstanceView(
        index=registry.index, protection=registry.protection, instance=instance_view(entry)
    )


async def state(request: StateRequest, *, ctx: Context) -> RegistryView:
    """`discovery.state`: every instance (by service, then id) with the index."""
    registry = ctx.registry
    instances = [
        instance_view(entry)
        for name in sorted(registry.by_service)
        for _, entry in sorted(registry.by_service[name].items())
    ]
    return RegistryView(index=registry.index, protection=registry.protection, instances=instances)
