"""Constrained field types shared by every message.

Each type validates with a message that says what a good value looks like, and carries a JSON
Schema of the same rule (for `/openapi.json`, `/asyncapi.json` and code generators in other
languages): every value the schema admits, the validator accepts. Where a rule is wider than a
portable pattern can say (any printable Unicode in a tag), the schema admits its ASCII part and
its `description` states the whole rule.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from ._patterns import HOSTNAME

__all__ = [
    "Address",
    "InstanceId",
    "InstanceStatus",
    "Labels",
    "Load",
    "Meta",
    "Port",
    "ResourceKind",
    "ResourceName",
    "ResourceStatus",
    "ServiceName",
    "Status",
    "Strategy",
    "Tag",
    "Tags",
    "Text",
    "UtcDatetime",
]

_DNS_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_INSTANCE_ID = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?"
_META_KEY = r"[A-Za-z0-9_.-]{1,128}"

_DNS_LABEL_RE = re.compile(_DNS_LABEL)
_INSTANCE_ID_RE = re.compile(_INSTANCE_ID)
_HOSTNAME_RE = re.compile(HOSTNAME)
_META_KEY_RE = re.compile(_META_KEY)

DNS_LABEL_MESSAGE = (
    "must be a DNS label: lowercase letters, digits and '-', 1-63 characters,"
    " not starting or ending with '-'"
)
INSTANCE_ID_MESSAGE = (
    "must be 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit"
)
ADDRESS_MESSAGE = "must be a hostname or an IPv4/IPv6 address, at most 253 characters"
TAG_MESSAGE = "must be 1-64 printable characters without commas"
META_KEY_MESSAGE = "must be 1-128 letters, digits, '_', '.' or '-'"
NUL_MESSAGE = "must not contain NUL characters"


def _dns_label(value: str) -> str:
    if not _DNS_LABEL_RE.fullmatch(value):
        raise PydanticCustomError("dns_label", DNS_LABEL_MESSAGE)
    return value


def _instance_id(value: str) -> str:
    if not _INSTANCE_ID_RE.fullmatch(value):
        raise PydanticCustomError("instance_id", INSTANCE_ID_MESSAGE)
    return value


def _address(value: str) -> str:
    # No IPv6 zone (`fe80::1%eth0`): it names an interface of one host, useless to the others.
    if 0 < len(value) <= 253 and "%" not in value:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            # A name whose last label is all digits is a mistyped IPv4 address, not a host.
            if _HOSTNAME_RE.fullmatch(value):
                return value
        else:
            return value
    raise PydanticCustomError("address", ADDRESS_MESSAGE)


def _tag(value: str) -> str:
    if not 1 <= len(value) <= 64 or "," in value or not value.isprintable():
        raise PydanticCustomError("tag", TAG_MESSAGE)
    return value


def _unique(values: list[str]) -> list[str]:
    # Tags are a set on the wire; keep the first occurrence so the order stays the sender's.
    return list(dict.fromkeys(values))


def _meta_key(value: str) -> str:
    if not _META_KEY_RE.fullmatch(value):
        raise PydanticCustomError("meta_key", META_KEY_MESSAGE)
    return value


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold U+0000; refuse it at the edge of the system.
    if "\x00" in value:
        raise PydanticCustomError("nul_character", NUL_MESSAGE)
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


ServiceName = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema(
        {"type": "string", "pattern": f"^{_DNS_LABEL}$", "minLength": 1, "maxLength": 63}
    ),
]
"""A service name: a DNS label (lowercase letters, digits, '-'; 1-63; no '-' at either end)."""

ResourceName = Annotated[
    str,
    AfterValidator(_dns_label),
    WithJsonSchema(
        {"type": "string", "pattern": f"^{_DNS_LABEL}$", "minLength": 1, "maxLength": 63}
    ),
]
"""A resource name: the same DNS-label rule as a service name."""

InstanceId = Annotated[
    str,
    AfterValidator(_instance_id),
    WithJsonSchema(
        {"type": "string", "pattern": f"^{_INSTANCE_ID}$", "minLength": 1, "maxLength": 128}
    ),
]
"""An instance id, unique across the registry (also names a host)."""

Address = Annotated[
    str,
    AfterValidator(_address),
    WithJsonSchema(
        {
            "description": "A hostname (its last label not all digits) or an IPv4/IPv6 address",
            "anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
                {"type": "string", "minLength": 1, "maxLength": 253, "pattern": f"^{HOSTNAME}$"},
            ],
        }
    ),
]
"""A hostname (RFC 1123, any case) or an IPv4/IPv6 literal without brackets."""

Port = Annotated[int, Field(ge=1, le=65535)]

Tag = Annotated[
    str,
    AfterValidator(_tag),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": 64,
            "pattern": "^[\\x20-\\x2b\\x2d-\\x7e]+$",
            "description": "1-64 printable characters, no commas (the pattern shows the ASCII"
            " ones; printable characters of any script are taken too)",
        }
    ),
]

Tags = Annotated[list[Tag], Field(max_length=32), AfterValidator(_unique)]
"""At most 32 tags; duplicates are dropped, keeping the first occurrence."""

_MetaKey = Annotated[
    str,
    AfterValidator(_meta_key),
    WithJsonSchema({"type": "string", "pattern": f"^{_META_KEY}$"}),
]
_NO_NUL = {"type": "string", "pattern": "^[^\\x00]*$"}
_MetaValue = Annotated[
    str,
    Field(max_length=512),
    AfterValidator(_no_nul),
    WithJsonSchema({**_NO_NUL, "maxLength": 512}),
]

# Keys that do not match are refused, which `patternProperties` alone would not say.
_PAIRS = {
    "type": "object",
    "maxProperties": 64,
    "patternProperties": {f"^{_META_KEY}$": {**_NO_NUL, "maxLength": 512}},
    "additionalProperties": False,
}

Meta = Annotated[dict[_MetaKey, _MetaValue], Field(max_length=64), WithJsonSchema(_PAIRS)]
"""Free-form string pairs: at most 64 keys of 1-128 `[A-Za-z0-9_.-]`, values up to 512 chars."""

Labels = Annotated[dict[_MetaKey, _MetaValue], Field(max_length=64), WithJsonSchema(_PAIRS)]
"""Resource labels: the same limits as `Meta`."""

Text = Annotated[
    str,
    Field(max_length=1024),
    AfterValidator(_no_nul),
    WithJsonSchema({**_NO_NUL, "maxLength": 1024}),
]
"""Free text (notes, reasons): up to 1024 characters."""

Load = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
"""A reported load, 0 (idle) to 1 (saturated)."""

UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timezone-aware timestamp, converted to UTC (naive datetimes are rejected)."""

Status = Literal["passing", "warning", "critical"]
"""What a heartbeat may report."""

InstanceStatus = Literal["passing", "warning", "critical", "draining"]
"""What the registry says of an instance."""

ResourceStatus = Literal["pending", "active", "unreachable", "deleting", "error"]
ResourceKind = Literal["vm", "volume", "network"]
Strategy = Literal["round_robin", "random", "weighted", "least_loaded"]
