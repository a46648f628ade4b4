"""Active health checks: what a registration asks to be probed, and what a checker found.

A check is HTTP (`http`: a URL) or TCP (`tcp`: `host:port`), run every `interval_s` with a
`timeout_s`. Verdicts are Consul's: HTTP 2xx passing, 429 warning, anything else (or a timeout,
or a refused connection) critical; a TCP connect that succeeds is passing. The status a checker
publishes applies the thresholds: `failures_before_critical` consecutive failures before it
turns critical, `successes_before_passing` consecutive passes before it turns passing again.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic_core import PydanticCustomError

from ._base import Event
from ._types import InstanceId, ServiceName, Status, UtcDatetime, _address, _instance_id

__all__ = ["OUTPUT_LIMIT", "Check", "CheckId", "CheckResult", "CheckState", "tcp_target"]

OUTPUT_LIMIT = 4096
"""At most this many characters of a check's output travel on the bus."""

URL_MESSAGE = "must be an http:// or https:// URL with a host (and a port 1-65535, if any)"
TCP_MESSAGE = "must be host:port (a hostname or an IP address, port 1-65535; IPv6 as [addr]:port)"
HEADER_MESSAGE = "header names must be HTTP tokens and values must not contain CR, LF or NUL"

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")


def _url(value: str) -> str:
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError for a port out of range
    except ValueError:
        raise PydanticCustomError("check_url", URL_MESSAGE) from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise PydanticCustomError("check_url", URL_MESSAGE)
    if any(c in value for c in "\r\n\x00 "):
        raise PydanticCustomError("check_url", URL_MESSAGE)
    return value


def tcp_target(value: str) -> tuple[str, int]:
    """`host:port` split, the host without IPv6 brackets; ValueError if it is not one."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(TCP_MESSAGE)  # an IPv6 address needs its brackets
    if not sep or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(TCP_MESSAGE)
    try:
        _address(host)
    except PydanticCustomError:
        raise ValueError(TCP_MESSAGE) from None
    return host, int(port_text)


def _tcp(value: str) -> str:
    try:
        tcp_target(value)
    except ValueError:
        raise PydanticCustomError("check_tcp", TCP_MESSAGE) from None
    return value


def _headers(value: dict[str, str]) -> dict[str, str]:
    for name, text in value.items():
        if not _TOKEN.fullmatch(name) or any(c in text for c in "\r\n\x00"):
            raise PydanticCustomError("check_header", HEADER_MESSAGE)
    return value


_LABEL = r"[a-z](?:[a-z0-9-]{0,19}[a-z0-9])?"
_ID = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?"
# Every value a pattern admits is accepted; where the rule is wider than a portable pattern
# can say (any host name), the schema admits a part of it and its description says the whole.
_URL_SCHEMA = {
    "type": "string",
    "maxLength": 2048,
    "pattern": rf"^https?://{_LABEL}(\.{_LABEL}){{0,3}}"
    r"(:[1-9][0-9]{0,3})?(/[A-Za-z0-9._~/-]*)?$",
    "description": "An http:// or https:// URL with a host (and a port 1-65535, if any)",
}
_TCP_SCHEMA = {
    "type": "string",
    "maxLength": 300,
    "pattern": rf"^{_LABEL}(\.{_LABEL}){{0,3}}:[1-9][0-9]{{0,3}}$",
    "description": "host:port: a hostname or an IP address ([v6] in brackets), port 1-65535",
}
_HEADERS_SCHEMA = {
    "type": "object",
    "maxProperties": 32,
    "patternProperties": {
        "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$": {
            "type": "string",
            "maxLength": 1024,
            "pattern": "^[^\r\n\x00]*$",
        }
    },
    "additionalProperties": False,
}

CheckId = Annotated[
    str,
    AfterValidator(_instance_id),
    Field(max_length=128),
    WithJsonSchema({"type": "string", "pattern": f"^{_ID}$", "minLength": 1, "maxLength": 128}),
]
"""A check's id within its instance: the same rule as an instance id."""

Url = Annotated[str, Field(max_length=2048), AfterValidator(_url), WithJsonSchema(_URL_SCHEMA)]
TcpTarget = Annotated[str, Field(max_length=300), AfterValidator(_tcp), WithJsonSchema(_TCP_SCHEMA)]
Headers = Annotated[
    dict[str, Annotated[str, Field(max_length=1024)]],
    Field(max_length=32),
    AfterValidator(_headers),
    WithJsonSchema(_HEADERS_SCHEMA),
]
Method = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def _one_kind_schema(schema: dict[str, Any]) -> None:
    # Exactly one of `http` or `tcp` is a string; the other is absent or null (answers carry
    # it as null). The same schema serves requests and answers, so null stays allowed.
    schema["oneOf"] = [
        {"required": [name], "properties": {name: {"type": "string"}}} for name in ("http", "tcp")
    ]


class Check(BaseModel):
    """One active health check of an instance: HTTP (`http`) or TCP (`tcp`), exactly one.

    `id` defaults to `check-<n>` (its 1-based position in `checks[]`).
    """

    model_config = ConfigDict(extra="ignore", frozen=True, json_schema_extra=_one_kind_schema)

    id: CheckId | None = None
    http: Url | None = None
    tcp: TcpTarget | None = None
    method: Method = "GET"
    headers: Headers = {}
    tls_skip_verify: bool = False
    interval_s: Annotated[float, Field(ge=1, le=3600, allow_inf_nan=False)] = 10.0
    timeout_s: Annotated[float, Field(gt=0, le=300, allow_inf_nan=False)] = 2.0
    failures_before_critical: Annotated[int, Field(ge=1, le=100)] = 1
    successes_before_passing: Annotated[int, Field(ge=1, le=100)] = 1

    @model_validator(mode="after")
    def _one_kind(self) -> Check:
        if (self.http is None) == (self.tcp is None):
            raise ValueError("a check has exactly one of 'http' (a URL) or 'tcp' (host:port)")
        return self

    @property
    def kind(self) -> Literal["http", "tcp"]:
        return "http" if self.http is not None else "tcp"

    @property
    def target(self) -> str:
        return self.http if self.http is not None else str(self.tcp)


def number_checks(checks: list[Check]) -> list[Check]:
    """Give each check without an id `check-<n>`; two checks of one instance never share one."""
    named = [
        c if c.id is not None else c.model_copy(update={"id": f"check-{n}"})
        for n, c in enumerate(checks, start=1)
    ]
    seen: set[str] = set()
    for check in named:
        if check.id in seen:
            raise ValueError(f"two checks have the id {check.id!r}")
        seen.add(str(check.id))
    return named


Checks = Annotated[list[Check], Field(max_length=16), AfterValidator(number_checks)]
"""At most 16 checks per instance, each with an id (given, or `check-<n>`)."""


class CheckState(BaseModel):
    """A check with what the registry knows of it: its last status and output."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    check: Check
    status: Status = "critical"
    output: Annotated[str, Field(max_length=OUTPUT_LIMIT)] = ""
    since: UtcDatetime | None = None
    """When the check last changed (the time of the `registry.check` that said so)."""


class CheckResult(Event):
    """`registry.check`: a checker's verdict on one check of an instance, with the thresholds
    applied; published when it changes (and once when a checker takes the check over)."""

    TYPE: ClassVar[str] = "registry.check"

    service: ServiceName
    instance_id: InstanceId
    check_id: CheckId
    status: Status
    output: Annotated[str, Field(max_length=OUTPUT_LIMIT)] = ""
