"""Every event type on the bus, by its `TYPE`."""

from __future__ import annotations

from ._base import Event
from .checks import CheckResult
from .registry import (
    Deregister,
    Drain,
    Heartbeat,
    Heartbeats,
    HeartbeatUnknown,
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatusChanged,
    ProtectionEntered,
    ProtectionExited,
    Register,
    ResourceObserved,
)
from .resources import (
    ResourceCreated,
    ResourceDeleted,
    ResourceDrift,
    ResourceStatusChanged,
    ResourceUpdated,
)

__all__ = ["EVENT_TYPES", "event_model"]

_EVENTS: tuple[type[Event], ...] = (
    # inputs of the discovery worker
    Register,
    Heartbeat,
    Heartbeats,
    Deregister,
    Drain,
    ResourceObserved,
    # published by health checkers
    CheckResult,
    # published by the discovery worker
    InstanceRegistered,
    InstanceStatusChanged,
    InstanceExpired,
    InstanceDeregistered,
    ProtectionEntered,
    ProtectionExited,
    HeartbeatUnknown,
    # published by the manager worker
    ResourceCreated,
    ResourceUpdated,
    ResourceStatusChanged,
    ResourceDeleted,
    ResourceDrift,
)


def _catalog(events: tuple[type[Event], ...]) -> dict[str, type[Event]]:
    catalog: dict[str, type[Event]] = {}
    for model in events:
        if model.TYPE in catalog:
            raise RuntimeError(
                f"event type {model.TYPE!r} is used by both "
                f"{catalog[model.TYPE].__name__} and {model.__name__}"
            )
        catalog[model.TYPE] = model
    return catalog


EVENT_TYPES: dict[str, type[Event]] = _catalog(_EVENTS)
"""Event type (the routing key on `govbus.events`) -> its payload model."""


def event_model(type_: str) -> type[Event] | None:
    """The payload model of an event type, or None for a type this version does not know."""
    return EVENT_TYPES.get(type_)
