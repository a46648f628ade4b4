"""HTTP-only shapes: query strings, bodies and answers that are not bus messages.

Bodies refuse unknown fields (no mass assignment); the bus models are reused wherever the
HTTP shape is the wire shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    TypeAdapter,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from schemas._types import (
    InstanceId,
    Load,
    ResourceKind,
    ResourceName,
    ResourceStatus,
    ServiceName,
    Status,
    Strategy,
    Tag,
    Text,
)
from schemas.registry import Register
from schemas.resources import ResourceSpec

SERVICE_NAME: TypeAdapter[str] = TypeAdapter(ServiceName)
RESOURCE_NAME: TypeAdapter[str] = TypeAdapter(ResourceName)
INSTANCE_ID: TypeAdapter[str] = TypeAdapter(InstanceId)

_PAIR = re.compile(r"[A-Za-z0-9_.-]{1,128}=[^\x00]{0,512}")
_PATTERN = re.compile(r"[a-z0-9_*#-]+(?:\.[a-z0-9_*#-]+)*")


def _pairs(values: list[str]) -> list[str]:
    for value in values:
        if not _PAIR.fullmatch(value):
            raise PydanticCustomError("pair", "must be KEY=VALUE")
    return values


def _patterns(value: str) -> str:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or len(parts) > 16 or not all(_PATTERN.fullmatch(p) for p in parts):
        raise PydanticCustomError(
            "types",
            "must be 1-16 comma-separated routing patterns of words and '*' or '#', "
            "e.g. registry.*",
        )
    return ",".join(parts)


Pairs = Annotated[
    list[str],
    Field(max_length=64),
    AfterValidator(_pairs),
    WithJsonSchema(
        {
            "type": "array",
            "maxItems": 64,
            "items": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}=[\\x20-\\x7e]{0,512}$"},
        }
    ),
]
"""Repeated `KEY=VALUE` query parameters (documented as printable ASCII values)."""

QueryTag = Annotated[
    Tag,
    WithJsonSchema({"type": "string", "pattern": "^[\\x20-\\x2b\\x2d-\\x7e]{1,64}$"}),
]
"""A tag filter (documented as printable ASCII without commas; any printable text is taken)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RegisterBody(Register):
    """`POST /v1/instances`: the `registry.register` payload, and nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class HeartbeatBody(_Strict):
    """`PUT /v1/instances/<id>/heartbeat`; `service` is looked up when left out."""

    service: ServiceName | None = None
    status: Status = "passing"
    note: Text = ""
    load: Load | None = None


class InstanceAction(_Strict):
    """Query string of drain and deregister: the instance's service, looked up if absent."""

    service: ServiceName | None = None


class ServiceQuery(_Strict):
    passing: bool = False
    tag: QueryTag | None = None
    meta: Pairs = []


class PickQuery(_Strict):
    strategy: Strategy = "round_robin"
    tag: QueryTag | None = None


class ResourcesQuery(_Strict):
    kind: ResourceKind | None = None
    status: ResourceStatus | None = None
    label: Pairs = []
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class EventsQuery(_Strict):
    types: Annotated[str, Field(max_length=1024), AfterValidator(_patterns)] = "#"


class Accepted(BaseModel):
    """202: the event was confirmed by the broker."""

    accepted: Literal[True] = True
    type: str
    event_id: str
    instance_id: InstanceId


class ResourceSpecBody(RootModel[ResourceSpec]):
    """`POST /v1/resources`: a spec, discriminated on `kind`."""


class ProblemBody(BaseModel):
    """RFC 9457 problem details."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[dict[str, str]] | None = None


def pairs_to_dict(values: list[str]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in values)
