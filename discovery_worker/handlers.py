"""What the discovery worker does with each event and each request: its two routing tables.

Handlers are plain functions: the typed message first, dependencies as keyword parameters
(`registry`, `journal`, `balancer`), which `bootstrap` binds by name.

Durability per event type:

- `registry.register`, `.deregister`, `.drain` and `resource.*` are acknowledged only once
  their effect, their inbox mark and the events they cause are committed (the handler waits
  for a flush), so nothing acknowledged is lost; a redelivered one finds its inbox mark (or,
  for resources, a version it already has) and has no second effect.
- `registry.heartbeat` changes memory only, and is written behind by the periodic flush. Its
  effect is idempotent by construction: the heartbeat's own time (`meta.time`) becomes
  `last_heartbeat`, and a heartbeat not newer than the last one applied changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bus.message import EventMeta
from bus.rpc import Method
from schemas import (
    Deregister,
    Drain,
    Event,
    Heartbeat,
    InstanceRequest,
    PickRequest,
    Register,
    ResourceCreated,
    ResourceDeleted,
    ResourceStatusChanged,
    ResourceUpdated,
    ServiceRequest,
    ServicesRequest,
    StateRequest,
)

from . import queries
from ._time import to_us
from .journal import Journal
from .registry import Registry

EventHandler = Callable[..., Awaitable[None]]


async def register(
    event: Register, meta: EventMeta, *, registry: Registry, journal: Journal
) -> None:
    if not journal.seen(meta.id):
        registry.register(event, meta.id, to_us(meta.time))
        journal.mark(meta.id)
    await journal.flush()


async def deregister(
    event: Deregister, meta: EventMeta, *, registry: Registry, journal: Journal
) -> None:
    if not journal.seen(meta.id):
        registry.deregister(event, meta.id, to_us(meta.time))
        journal.mark(meta.id)
    await journal.flush()


async def drain(event: Drain, meta: EventMeta, *, registry: Registry, journal: Journal) -> None:
    if not journal.seen(meta.id):
        registry.drain(event, meta.id, to_us(meta.time))
        journal.mark(meta.id)
    await journal.flush()


async def heartbeat(event: Heartbeat, meta: EventMeta, *, registry: Registry) -> None:
    registry.heartbeat(event, meta.id, to_us(meta.time))


async def resource(
    event: ResourceCreated | ResourceUpdated | ResourceStatusChanged | ResourceDeleted,
    meta: EventMeta,
    *,
    registry: Registry,
    journal: Journal,
) -> None:
    placed = event.resource
    deleted = isinstance(event, ResourceDeleted)
    if registry.place(placed.id, placed.host, event.version, deleted=deleted):
        await journal.flush()


EVENT_MODELS: dict[str, type[Event]] = {
    model.TYPE: model
    for model in (
        Register,
        Heartbeat,
        Deregister,
        Drain,
        ResourceCreated,
        ResourceUpdated,
        ResourceStatusChanged,
        ResourceDeleted,
    )
}

EVENT_HANDLERS: dict[str, EventHandler] = {
    Register.TYPE: register,
    Heartbeat.TYPE: heartbeat,
    Deregister.TYPE: deregister,
    Drain.TYPE: drain,
    ResourceCreated.TYPE: resource,
    ResourceUpdated.TYPE: resource,
    ResourceStatusChanged.TYPE: resource,
    ResourceDeleted.TYPE: resource,
}
"""Event type -> handler. Other `resource.*` types (observed, drift) are acknowledged unread."""

PATTERNS = [Register.TYPE, Heartbeat.TYPE, Deregister.TYPE, Drain.TYPE, "resource.*"]
"""What the worker queue is bound to on `govbus.events`."""


def _method(request: type[Any], handler: Callable[..., Awaitable[Any]]) -> Method:
    # The handler still wants its dependencies; `bootstrap` binds them by name.
    return Method(request, handler)


RPC_METHODS: dict[str, Method] = {
    "discovery.services": _method(ServicesRequest, queries.services),
    "discovery.service": _method(ServiceRequest, queries.service),
    "discovery.instance": _method(InstanceRequest, queries.instance),
    "discovery.pick": _method(PickRequest, queries.pick),
    "discovery.state": _method(StateRequest, queries.state),
}
"""RPC method -> request model and handler (dependencies unbound)."""
