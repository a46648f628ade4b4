"""Platform resources (virtual machines, volumes, networks) and the manager's events.

A resource is a flat object: the fields of its kind's spec plus what the manager stores
(`id`, `status`, `host`, `version`, `created_at`, `updated_at`). Both specs and stored resources
are discriminated unions on `kind`.

Specs and patches come from users and refuse unknown fields; a stored `Resource` travels inside
events and replies, which only grow, so it ignores unknown fields.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.config import JsonDict
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from ._base import Event
from ._patterns import NETWORK_SYNTAX, ipv4_networks, ipv6_networks
from ._types import (
    InstanceId,
    Labels,
    ResourceKind,
    ResourceName,
    ResourceStatus,
    Text,
    UtcDatetime,
)

__all__ = [
    "PATCH_MODELS",
    "RESOURCE_ADAPTER",
    "SPEC_ADAPTER",
    "DriftMismatch",
    "Network",
    "NetworkPatch",
    "NetworkSpec",
    "ObservedResource",
    "Resource",
    "ResourceCreated",
    "ResourceDeleted",
    "ResourceDrift",
    "ResourcePatch",
    "ResourceSpec",
    "ResourceStatusChanged",
    "ResourceUpdated",
    "Vm",
    "VmPatch",
    "VmSpec",
    "Volume",
    "VolumePatch",
    "VolumeSpec",
    "validate_patch",
]


def _cidr(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value, strict=True))
    except ValueError as exc:
        raise PydanticCustomError(
            "cidr",
            "must be a network in CIDR notation with no host bits set: {error}",
            {"error": str(exc)},
        ) from None


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise PydanticCustomError("uuid", "must be a UUID") from None


def _printable(value: str) -> str:
    if not value.isprintable():
        raise PydanticCustomError("printable", "must not contain control characters")
    return value


Vcpus = Annotated[int, Field(ge=1, le=256)]
MemoryMb = Annotated[int, Field(ge=64, le=4_194_304)]
Image = Annotated[
    str,
    Field(min_length=1, max_length=128),
    AfterValidator(_printable),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[\\x20-\\x7e]+$",
            "description": "1-128 printable characters (the pattern shows the ASCII ones)",
        }
    ),
]
SizeGb = Annotated[int, Field(ge=1, le=65536)]
Cidr = Annotated[
    str,
    AfterValidator(_cidr),
    # What a request may say: a network with no host bits, IPv6 written as its leading
    # groups and `::`. What the manager answers: the normalised form (`::` anywhere).
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^(?:{ipv4_networks()}|{ipv6_networks()})$",
            "description": "An IPv4 or IPv6 network in CIDR notation with no host bits set,"
            " e.g. 10.0.0.0/16 or 2001:db8::/32",
        },
        mode="validation",
    ),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^{NETWORK_SYNTAX}$",
            "description": "The network, normalised (`str(ipaddress.ip_network(...))`)",
        },
        mode="serialization",
    ),
]
ResourceId = Annotated[str, AfterValidator(_uuid)]
Version = Annotated[int, Field(ge=1)]


# --- specs: what a user asks for --------------------------------------------------------------


def _kind_required(schema: JsonDict) -> None:
    # `kind` has a default so a class can be built without it, but the unions on the wire
    # are discriminated on it: a message always names its kind.
    required = schema.setdefault("required", [])
    assert isinstance(required, list)
    if "kind" not in required:
        required.insert(0, "kind")


class VmSpec(BaseModel):
    """A virtual machine to create."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_required)

    kind: Literal["vm"] = "vm"
    name: ResourceName
    labels: Labels = {}
    vcpus: Vcpus
    memory_mb: MemoryMb
    image: Image


class VolumeSpec(BaseModel):
    """A block volume to create, optionally attached to a VM by name."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_required)

    kind: Literal["volume"] = "volume"
    name: ResourceName
    labels: Labels = {}
    size_gb: SizeGb
    attached_to: ResourceName | None = None


class NetworkSpec(BaseModel):
    """A network to create; `cidr` is stored normalised (`str(ipaddress.ip_network(...))`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra=_kind_required)

    kind: Literal["network"] = "network"
    name: ResourceName
    labels: Labels = {}
    cidr: Cidr


ResourceSpec = Annotated[VmSpec | VolumeSpec | NetworkSpec, Field(discriminator="kind")]
SPEC_ADAPTER: TypeAdapter[VmSpec | VolumeSpec | NetworkSpec] = TypeAdapter(ResourceSpec)


# --- stored resources: what the manager keeps and answers -------------------------------------


class _Stored(BaseModel):
    """The fields the manager adds to a spec."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: ResourceId
    status: ResourceStatus
    host: InstanceId | None = None
    version: Version
    created_at: UtcDatetime
    updated_at: UtcDatetime


class Vm(_Stored, VmSpec):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Volume(_Stored, VolumeSpec):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Network(_Stored, NetworkSpec):
    model_config = ConfigDict(extra="ignore", frozen=True)


Resource = Annotated[Vm | Volume | Network, Field(discriminator="kind")]
RESOURCE_ADAPTER: TypeAdapter[Vm | Volume | Network] = TypeAdapter(Resource)


# --- patches: what `manager.update` may change --------------------------------------------------

_NULLABLE = frozenset({"attached_to"})


def _no_default(schema: JsonDict) -> None:
    # The default only marks "left out" (kept as is); it is no value a client may send.
    schema.pop("default", None)


def _keep() -> Any:
    """A patch field's default: left out, the field keeps its value."""
    return Field(default=None, json_schema_extra=_no_default)


class _Patch(BaseModel):
    """Fields to change: an omitted field is left as is; `labels` replaces the whole map.

    `null` is refused except where it means something (`attached_to: null` detaches a volume),
    and the JSON Schema says so (`SkipJsonSchema[None]`). `kind` and `name` cannot be changed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, json_schema_extra={"minProperties": 1})

    labels: Labels | SkipJsonSchema[None] = _keep()

    @field_validator("*")
    @classmethod
    def _not_null(cls, value: object, info: ValidationInfo) -> object:
        if value is None and info.field_name not in _NULLABLE:
            raise PydanticCustomError(
                "not_null", "must not be null; leave the field out to keep it unchanged"
            )
        return value

    @model_validator(mode="after")
    def _not_empty(self) -> Self:
        if not self.model_fields_set:
            raise PydanticCustomError("empty_patch", "must change at least one field")
        return self

    def changes(self) -> dict[str, Any]:
        """The fields that were given, as plain data."""
        return self.model_dump(exclude_unset=True)


class VmPatch(_Patch):
    vcpus: Vcpus | SkipJsonSchema[None] = _keep()
    memory_mb: MemoryMb | SkipJsonSchema[None] = _keep()
    image: Image | SkipJsonSchema[None] = _keep()


class VolumePatch(_Patch):
    size_gb: SizeGb | SkipJsonSchema[None] = _keep()
    attached_to: ResourceName | None = _keep()


class NetworkPatch(_Patch):
    cidr: Cidr | SkipJsonSchema[None] = _keep()


class ResourcePatch(VmPatch, VolumePatch, NetworkPatch):
    """Any patchable field of any kind: what `manager.update` accepts before it knows the kind.

    Once the resource is loaded, `validate_patch(kind, patch.changes())` refuses the fields
    that do not belong to its kind.
    """


PATCH_MODELS: dict[ResourceKind, type[VmPatch | VolumePatch | NetworkPatch]] = {
    "vm": VmPatch,
    "volume": VolumePatch,
    "network": NetworkPatch,
}


def validate_patch(
    kind: ResourceKind, changes: Mapping[str, Any]
) -> VmPatch | VolumePatch | NetworkPatch:
    """Validate `changes` against the patch model of `kind`; raises `pydantic.ValidationError`."""
    return PATCH_MODELS[kind].model_validate(changes)


# --- events --------------------------------------------------------------------------------------


class ObservedResource(BaseModel):
    """One resource as a host agent sees it (also a desired resource in a drift report)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: ResourceKind
    name: ResourceName
    status: ResourceStatus


class DriftMismatch(BaseModel):
    """A resource present on both sides whose status differs."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: ResourceKind
    name: ResourceName
    desired_status: ResourceStatus
    observed_status: ResourceStatus


class _ResourceEvent(Event):
    resource: Resource
    version: Version


class ResourceCreated(_ResourceEvent):
    TYPE: ClassVar[str] = "resource.created"


class ResourceUpdated(_ResourceEvent):
    TYPE: ClassVar[str] = "resource.updated"

    changed: list[str] = []


class ResourceStatusChanged(_ResourceEvent):
    TYPE: ClassVar[str] = "resource.status_changed"

    previous: ResourceStatus | None = None
    status: ResourceStatus
    reason: Text = ""


class ResourceDeleted(_ResourceEvent):
    """The resource as it was when deleted."""

    TYPE: ClassVar[str] = "resource.deleted"


class ResourceDrift(Event):
    """What a host reports differs from the desired inventory for that host."""

    TYPE: ClassVar[str] = "resource.drift"

    host: InstanceId
    missing: list[ObservedResource] = []
    unexpected: list[ObservedResource] = []
    mismatched: list[DriftMismatch] = []
