"""HTTP-only shapes: query strings, bodies and answers that are not bus messages.

Bodies refuse unknown fields (no mass assignment); the bus models are reused wherever the
HTTP shape is the wire shape.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

from bus.message import parse_moment
from schemas._types import (
    InstanceId,
    Load,
    ResourceKind,
    ResourceStatus,
    ServiceName,
    Status,
    Strategy,
    Tag,
    Text,
)
from schemas.registry import Instance, Register
from schemas.resources import Resource, ResourceSpec

# A version of at most 18 digits is below 2**63, the largest one the store keeps.
_VERSION = "[1-9][0-9]{0,17}"
_ETAG = re.compile(rf'\*|(?:W/)?"{_VERSION}"|{_VERSION}')
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


def _if_match(value: str) -> str:
    value = value.strip()
    if not _ETAG.fullmatch(value):
        raise PydanticCustomError("if_match", 'must be the ETag of the resource, e.g. "3", or *')
    return value


IfMatch = Annotated[
    str,
    AfterValidator(_if_match),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": f"^(?:{_ETAG.pattern})$",
            "description": 'The ETag of the resource (`"3"`, `W/"3"` or `3`), or `*` for any',
        }
    ),
]
"""`If-Match`: the version a change is for; `*` (or no header) applies to any version."""


def if_match_version(value: str | None) -> int | None:
    """The version an `IfMatch` value names; None for `*` or no header."""
    if value is None or value == "*":
        return None
    return int(value.removeprefix("W/").strip('"'))


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


_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
# What `wait` takes (also its JSON Schema pattern): Go durations, or a bare number of seconds.
_WAIT = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+|[0-9]+(?:\.[0-9]*)?")


def go_duration_s(text: str) -> float | None:
    """Go's duration syntax (`10s`, `1m30s`, `500ms`) in seconds; None if `text` is not one."""
    parts = _GO_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return sum(float(n) * _UNIT_S[u] for n, u in parts)


def parse_wait(value: object) -> float:
    """A blocking read's `wait` in Go's duration syntax, as Consul takes it (`30s`, `5m`,
    `60000ms`, `1m30s`; a bare number is seconds), in seconds. Longer than 10 minutes is
    cut to 10 minutes (Consul does the same)."""
    text = str(value).strip()
    if len(text) > 32 or not _WAIT.fullmatch(text):
        raise PydanticCustomError("wait", "must be a duration such as 30s, 5m or 60000ms")
    seconds = go_duration_s(text)
    return min(float(text) if seconds is None else seconds, 600.0)


Wait = Annotated[
    float,
    BeforeValidator(parse_wait),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^(?:[0-9]+(?:\\.[0-9]*)?(?:ns|us|µs|ms|s|m|h))+$|^[0-9]+(?:\\.[0-9]*)?$",
            "maxLength": 32,
            "description": "how long to block (Go duration: 30s, 5m, 60000ms); at most 10m",
            "examples": ["30s"],
        }
    ),
]
Index = Annotated[int, Field(ge=0, le=2**63 - 1)]


class Blocking(_Strict):
    """A registry read that may block: with `index`, it answers once its index passes it, or
    after `wait` (default 5 minutes, at most 10, jittered) unchanged. `consistent=1` asks the
    discovery worker rather than the edge's cache."""

    index: Index | None = None
    wait: Wait = 300.0
    consistent: bool = False


class ServiceQuery(Blocking):
    passing: bool = False
    tag: Tag | None = None
    meta: Pairs = []


class PickQuery(_Strict):
    strategy: Strategy = "round_robin"
    tag: Tag | None = None


class ResourcesQuery(_Strict):
    kind: ResourceKind | None = None
    status: ResourceStatus | None = None
    label: Pairs = []
    limit: Annotated[int, Field(ge=1, le=500)] = 100
    cursor: Annotated[str, Field(min_length=1, max_length=512)] | None = None


class EventsQuery(_Strict):
    types: Annotated[
        str,
        Field(max_length=1024),
        AfterValidator(_patterns),
        WithJsonSchema(
            {
                "type": "string",
                "maxLength": 1024,
                "pattern": f"^{_PATTERN.pattern}(?:,{_PATTERN.pattern}){{0,15}}$",
                "description": "Comma-separated routing patterns; `*` ends one as `#` does",
            }
        ),
    ] = "#"


def _moment(value: Any) -> datetime:
    if not isinstance(value, str):
        raise PydanticCustomError("moment", "must be an RFC 3339 date and time")
    try:
        return parse_moment(value)
    except ValueError as exc:
        raise PydanticCustomError("moment", "{reason}", {"reason": str(exc)}) from None


Moment = Annotated[
    datetime,
    BeforeValidator(_moment),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with its offset, e.g. 2026-01-01T12:00:00Z",
        }
    ),
]


class HistoryQuery(_Strict):
    at: Moment


class Protection(BaseModel):
    """Whether expiry protection was on, and since when (null: it never changed)."""

    on: bool
    since: datetime | None


class HistoryRange(BaseModel):
    """`GET /v1/history/oldest`: from when the recorded log answers."""

    oldest: datetime | None


class HistoryView(BaseModel):
    """`GET /v1/history`: the registry and the inventory at `at`, in `govbus replay`'s shape."""

    at: datetime
    index: int
    protection: Protection
    instances: list[Instance]
    resources: list[Resource]


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
