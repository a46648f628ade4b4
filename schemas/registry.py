"""The service registry: what services tell it, and what the discovery worker announces.

Inputs (`registry.register`, `registry.heartbeat`, `registry.deregister`, `registry.drain`,
`resource.observed`) are published by services or their host agents; the rest are published by
the discovery worker.
"""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from ._base import Event
from ._types import (
    Address,
    InstanceId,
    InstanceStatus,
    Load,
    Meta,
    Port,
    ServiceName,
    Status,
    Tags,
    Text,
    UtcDatetime,
)
from .checks import Checks, CheckState
from .resources import ObservedResource

__all__ = [
    "Deregister",
    "Drain",
    "Heartbeat",
    "HeartbeatUnknown",
    "Instance",
    "InstanceDeregistered",
    "InstanceExpired",
    "InstanceRegistered",
    "InstanceStatusChanged",
    "ProtectionEntered",
    "ProtectionExited",
    "Register",
    "ResourceObserved",
]

TtlS = Annotated[float, Field(ge=0, le=86_400, allow_inf_nan=False)]
"""Seconds without a heartbeat before an instance turns critical (fractions allowed); 0 means
no TTL: the instance is never judged by heartbeats (its checks alone decide)."""

DeregisterAfterS = Annotated[float, Field(ge=0, le=7 * 86_400, allow_inf_nan=False)]
"""Seconds an instance may stay critical before it is removed."""

Weight = Annotated[int, Field(ge=1, le=1000)]
"""Relative share of picks under the `weighted` strategy."""

Count = Annotated[int, Field(ge=0)]


# --- inputs --------------------------------------------------------------------------------------


class Register(Event):
    """Add an instance, or update it (a re-registration under another service moves it)."""

    TYPE: ClassVar[str] = "registry.register"

    service: ServiceName
    instance_id: InstanceId
    address: Address
    port: Port
    tags: Tags = []
    meta: Meta = {}
    ttl_s: TtlS = 30.0
    deregister_after_s: DeregisterAfterS = 90.0
    weight: Weight = 1
    status: Status = "passing"
    """What it reports at registration, as a first heartbeat would (Consul's TTL checks start
    `critical` until their first pass); its checks may make it worse."""
    checks: Checks = []
    """Active health checks (`schemas.checks.Check`): a checked instance starts `critical`
    until its checks pass."""


class Heartbeat(Event):
    """An instance is alive, with its own view of its health."""

    TYPE: ClassVar[str] = "registry.heartbeat"

    service: ServiceName
    instance_id: InstanceId
    status: Status = "passing"
    note: Text = ""
    load: Load | None = None


MAX_BEATS = 1000


class Heartbeats(Event):
    """Many heartbeats in one message, for an agent that speaks for a host's or a pod's
    instances: the same effect as sending each. A bad entry rejects the whole message, with a
    reason naming the entry (`beats.17.instance_id: ...`)."""

    TYPE: ClassVar[str] = "registry.heartbeats"

    beats: list[Heartbeat] = Field(min_length=1, max_length=MAX_BEATS)


class Deregister(Event):
    """Remove an instance now."""

    TYPE: ClassVar[str] = "registry.deregister"

    service: ServiceName
    instance_id: InstanceId


class Drain(Event):
    """Stop sending an instance new work (it leaves picks but stays listed) before it leaves."""

    TYPE: ClassVar[str] = "registry.drain"

    service: ServiceName
    instance_id: InstanceId


class ResourceObserved(Event):
    """What a host agent sees running on its host."""

    TYPE: ClassVar[str] = "resource.observed"

    host: InstanceId
    resources: Annotated[list[ObservedResource], Field(max_length=10_000)] = []


# --- the registry's view -------------------------------------------------------------------------


class Instance(BaseModel):
    """One registered instance, as the registry holds it and the edge shows it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    service: ServiceName
    instance_id: InstanceId
    address: Address
    port: Port
    tags: Tags = []
    meta: Meta = {}
    weight: Weight = 1
    status: InstanceStatus
    registered_at: UtcDatetime
    last_heartbeat: UtcDatetime | None = None
    ttl_s: TtlS = 30.0
    deregister_after_s: DeregisterAfterS = 90.0
    load: Load | None = None
    note: Text = ""
    reason: Annotated[str, Field(max_length=256)] | None = None
    """Why its status last changed (the `reason` of its last `registry.instance.status_changed`:
    `registered`, `heartbeat_missed`, `reported`, …); null where the registry does not know."""
    checks: list[CheckState] = []


# --- published by the discovery worker -----------------------------------------------------------


class InstanceRegistered(Event):
    """A new instance, or a re-registration that changed it."""

    TYPE: ClassVar[str] = "registry.instance.registered"

    instance: Instance


class InstanceStatusChanged(Event):
    """A transition between statuses; `reason` says why (`heartbeat_missed`, `reported`,
    `drain_requested`, `recovered`, `check_failed`, `check_warning`, `check_passed`, ...).
    `previous` is null for an instance's first status. A change a check caused names it
    (`check_id`) with its output."""

    TYPE: ClassVar[str] = "registry.instance.status_changed"

    service: ServiceName
    instance_id: InstanceId
    previous: InstanceStatus | None = None
    status: InstanceStatus
    reason: Annotated[str, Field(min_length=1, max_length=256)]
    check_id: Annotated[str | None, Field(max_length=128)] = None
    output: Annotated[str, Field(max_length=4096)] = ""


class InstanceExpired(Event):
    """Critical for longer than `deregister_after_s`: removed. `reason` is
    `heartbeat_missed`, or `protection_ended` for an instance expiry protection had kept
    (removed once protection ended and it still did not come back)."""

    TYPE: ClassVar[str] = "registry.instance.expired"

    service: ServiceName
    instance_id: InstanceId
    last_heartbeat: UtcDatetime | None = None
    reason: Annotated[str, Field(min_length=1, max_length=256)] = "heartbeat_missed"


class InstanceDeregistered(Event):
    """Removed on request."""

    TYPE: ClassVar[str] = "registry.instance.deregistered"

    service: ServiceName
    instance_id: InstanceId


class _Protection(Event):
    critical: Count
    total: Count
    threshold: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class ProtectionEntered(_Protection):
    """Too many instances went critical at once: expiry is suspended until heartbeats resume."""

    TYPE: ClassVar[str] = "registry.protection.entered"


class ProtectionExited(_Protection):
    """Expiry applies again; `reason` says why protection ended: `heartbeats_resumed` (the
    instances missing no longer make a mass silence), `others_beating` (the rest of the
    registry kept beating on time: the silence is the silent instances' own, not the bus's) or
    `time_limit` (`protection_max_s` passed)."""

    TYPE: ClassVar[str] = "registry.protection.exited"

    reason: Annotated[str, Field(min_length=1, max_length=256)] = "heartbeats_resumed"


class HeartbeatUnknown(Event):
    """A heartbeat for an instance the registry does not know: it should register again."""

    TYPE: ClassVar[str] = "registry.heartbeat.unknown"

    service: ServiceName
    instance_id: InstanceId
