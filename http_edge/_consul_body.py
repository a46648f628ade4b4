"""Consul's service registration body, translated into a `registry.register`.

Consul decodes JSON keys case-insensitively, so clients send Go's CamelCase (`Name`, `Check`,
`DeregisterCriticalServiceAfter`) or lowercase (py-consul: `name`, `checks`, `http`); keys are
compared here without case and without `_`. Durations are Go's (`"10s"`, `"1m30s"`,
`"500ms"`). A mistake is a `ConsulInvalid` naming the field as the client wrote it.
"""

from __future__ import annotations

import re
from typing import Any

from http_edge.models import go_duration_s

__all__ = ["ConsulInvalid", "register_payload", "ttl_check_instance"]

_CHECK_ID = re.compile(r"[^A-Za-z0-9._-]+")
_OTHER_KINDS = ("grpc", "script", "args", "dockercontainerid", "h2ping", "udp", "aliasservice")
TTL_STATUSES = ("passing", "warning", "critical")
NEVER_S = 7 * 86_400.0
"""Without `DeregisterCriticalServiceAfter` Consul never removes a service whose TTL check is
critical; govbus's longest wait is 7 days."""
TTL_CHECK_META = "consul-ttl-check"
"""Meta key keeping a TTL check's own id, when it is not Consul's default `service:<id>`."""


class ConsulInvalid(ValueError):
    """A Consul body govbus cannot take: `field` (as sent) and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _fold(data: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """Keys without case and `_` -> (the key as sent, value)."""
    return {k.lower().replace("_", ""): (k, v) for k, v in data.items()}


def duration_s(value: Any, field: str) -> float:
    """Go's duration string (or a number of seconds) in seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        seconds = go_duration_s(value.strip())
        if seconds is not None:
            return seconds
    raise ConsulInvalid(field, f'must be a duration such as "10s" or "1m30s", not {value!r}')


def _check(raw: Any, field: str, service_id: str) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """One Consul check -> (a govbus check or None for a TTL check, what it says of the
    instance: `ttl_s`, `deregister_after_s`, `ttl_check_id`)."""
    if not isinstance(raw, dict):
        raise ConsulInvalid(field, "must be an object")
    keys = _fold(raw)

    def get(name: str) -> Any:
        return keys[name][1] if name in keys else None

    def name_of(key: str) -> str:
        return f"{field}.{keys[key][0]}" if key in keys else f"{field}.{key}"

    extra: dict[str, Any] = {}
    if get("deregistercriticalserviceafter") is not None:
        key = "deregistercriticalserviceafter"
        extra["deregister_after_s"] = duration_s(get(key), name_of(key))
    check_id = get("checkid") or get("id")
    if get("ttl") is not None:
        extra["ttl_s"] = duration_s(get("ttl"), name_of("ttl"))
        extra["ttl_check_id"] = str(check_id or f"service:{service_id}")
        # Consul's checks start critical until their first pass, unless `Status` says.
        status = get("status")
        if status is not None and status not in TTL_STATUSES:
            raise ConsulInvalid(name_of("status"), "must be passing, warning or critical")
        extra["status"] = status or "critical"
        return None, extra
    if get("http") is None and get("tcp") is None:
        kinds = sorted(
            k for k in ("grpc", "script", "args", "dockercontainerid", "h2ping") if k in keys
        )
        what = f"kind {kinds[0]!r} is not supported" if kinds else "needs HTTP, TCP or TTL"
        raise ConsulInvalid(
            field, f"{what} (govbus runs HTTP and TCP checks; TTL means heartbeats)"
        )
    if get("interval") is None:
        raise ConsulInvalid(name_of("interval"), "required for an HTTP or TCP check")
    check: dict[str, Any] = {"interval_s": duration_s(get("interval"), name_of("interval"))}
    if check_id:
        check["id"] = _CHECK_ID.sub("-", str(check_id)).strip("-._")[:128] or None
    if get("http") is not None:
        check["http"] = get("http")
        if get("method"):
            check["method"] = str(get("method")).upper()
        header = get("header")
        if isinstance(header, dict):
            check["headers"] = {
                str(k): ", ".join(map(str, v)) if isinstance(v, list) else str(v)
                for k, v in header.items()
            }
        if get("tlsskipverify") is not None:
            check["tls_skip_verify"] = bool(get("tlsskipverify"))
    else:
        check["tcp"] = get("tcp")
    if get("timeout") is not None:
        check["timeout_s"] = duration_s(get("timeout"), name_of("timeout"))
    if get("successbeforepassing"):
        check["successes_before_passing"] = get("successbeforepassing")
    if get("failuresbeforecritical"):
        check["failures_before_critical"] = get("failuresbeforecritical")
    return check, extra


def register_payload(body: Any, *, default_address: str) -> dict[str, Any]:
    """A Consul `PUT /v1/agent/service/register` body as a `registry.register` payload (still
    to be validated by `schemas.Register`)."""
    if not isinstance(body, dict):
        raise ConsulInvalid("body", "must be a JSON object")
    keys = _fold(body)

    def get(name: str) -> Any:
        return keys[name][1] if name in keys else None

    name = get("name")
    if not isinstance(name, str) or not name:
        raise ConsulInvalid(keys["name"][0] if "name" in keys else "Name", "required")
    service_id = str(get("id") or name)
    port = get("port")
    if not port:
        raise ConsulInvalid(keys["port"][0] if "port" in keys else "Port", "required (1-65535)")
    raw_checks: list[tuple[str, Any]] = []
    if get("check") is not None:
        raw_checks.append((keys["check"][0], get("check")))
    if get("checks") is not None:
        many = get("checks")
        if not isinstance(many, list):
            raise ConsulInvalid(keys["checks"][0], "must be a list")
        raw_checks += [(f"{keys['checks'][0]}.{i}", c) for i, c in enumerate(many)]
    checks, ttl, deregister = _checks(raw_checks, service_id)
    meta = dict(get("meta") or {}) if isinstance(get("meta") or {}, dict) else get("meta")
    if ttl and ttl["ttl_check_id"] != f"service:{service_id}" and isinstance(meta, dict):
        meta[TTL_CHECK_META] = ttl["ttl_check_id"]
    payload: dict[str, Any] = {
        "service": name,
        "instance_id": service_id,
        "address": get("address") or default_address,
        "port": port,
        "tags": get("tags") or [],
        "meta": meta,
        "checks": checks,
        # A TTL check is the instance's heartbeat TTL; without one, checks alone decide.
        "ttl_s": ttl["ttl_s"] if ttl else 0,
    }
    if ttl:
        payload["status"] = ttl["status"]
    if deregister:
        payload["deregister_after_s"] = min(deregister)
    elif ttl:
        payload["deregister_after_s"] = NEVER_S
    weights = get("weights")
    if isinstance(weights, dict):
        passing = _fold(weights).get("passing")
        if passing is not None:
            payload["weight"] = passing[1]
    return payload


def _checks(
    raw_checks: list[tuple[str, Any]], service_id: str
) -> tuple[list[dict[str, Any]], dict[str, Any], list[float]]:
    """Consul's checks -> govbus's checks, the TTL check's terms (empty: none), and every
    `DeregisterCriticalServiceAfter` given."""
    checks: list[dict[str, Any]] = []
    ttl: dict[str, Any] = {}
    deregister: list[float] = []
    for field, raw in raw_checks:
        check, extra = _check(raw, field, service_id)
        if check is not None:
            checks.append(check)
        if "ttl_s" in extra:
            if ttl:  # one TTL an instance: two would disagree on which one a pass updates
                raise ConsulInvalid(field, "a second TTL check (govbus keeps one per service)")
            ttl = extra
        if "deregister_after_s" in extra:
            deregister.append(extra["deregister_after_s"])
    return checks, ttl, deregister


def ttl_check_instance(check_id: str) -> str | None:
    """The instance a TTL check id names, when it is Consul's default `service:<id>`."""
    return check_id.removeprefix("service:") if check_id.startswith("service:") else None
