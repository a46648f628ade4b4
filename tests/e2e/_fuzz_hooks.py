"""Schemathesis hooks of the edge fuzz (`test_edge_fuzz.py`), loaded through `fuzz.toml`.

The document says what a request may contain. A few answers also depend on what the inventory
holds, which no schema can say, and the fuzz keeps its requests clear of those, nothing else:
- a volume can only be attached to a vm that exists: `attached_to` is left out (or detaches);
- a patch can only change fields of the resource's kind: resources created here carry their
  kind in their name (`vm-web`), and a patch to one keeps the fields of that kind. A patch to a
  name no resource has keeps every field (and is a 404 once the edge has validated them all).
- an instance's checks must have different ids (JSON Schema cannot say that of array items):
  a registration's repeated ids are made unique (a repeat is refused by the schema:
  tests/unit/test_checks_registry.py);
- a blocking read (`index` given) would hold its answer for up to its `wait` (10 minutes): it
  waits `0s` here (blocking: tests/integration/test_edge_blocking.py, test_consul_edge.py and
  tests/e2e/test_consul_reads.py).
Each change keeps the request within the document: schemathesis checks that again before it
sends one.

One check beyond schemathesis' own: a 503 must be a worker's verdict (`unavailable`: no healthy
instance or host, which SPEC answers with 503 and Retry-After), never the bus failing.
"""

from __future__ import annotations

from typing import Any

import schemathesis

KIND_FIELDS = {
    "vm": {"vcpus", "memory_mb", "image"},
    "volume": {"size_gb", "attached_to"},
    "network": {"cidr"},
}
MAX_NAME = 63


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    if case.query and "index" in case.query:
        case.query["wait"] = "0s"
    body = case.body
    if not isinstance(body, dict):
        return
    if (case.method, case.path) == ("POST", "/v1/instances"):
        checks = body.get("checks")
        if isinstance(checks, list):
            seen: set[object] = set()
            for number, check in enumerate(checks):
                if isinstance(check, dict) and isinstance(check.get("id"), str):
                    if check["id"] in seen:
                        check["id"] = f"{str(check['id'])[:120]}-{number}"
                    seen.add(check["id"])
    elif (case.method, case.path) == ("POST", "/v1/resources"):
        kind, name = body.get("kind"), body.get("name")
        if isinstance(kind, str) and kind in KIND_FIELDS and isinstance(name, str) and name:
            body["name"] = f"{kind}-{name}"[:MAX_NAME].rstrip("-")
        if body.get("attached_to") is not None:
            body["attached_to"] = None
    elif (case.method, case.path) == ("PATCH", "/v1/resources/{name}"):
        name = str((case.path_parameters or {}).get("name", ""))
        kind = next((k for k in KIND_FIELDS if name.startswith(f"{k}-")), None)
        if kind is None:
            return
        for other in set().union(*KIND_FIELDS.values()) - KIND_FIELDS[kind]:
            body.pop(other, None)
        if body.get("attached_to") is not None:
            body["attached_to"] = None
        if not body:
            body["labels"] = {}


@schemathesis.check
def designed_unavailable(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> bool | None:
    """A 503 is the workers' `unavailable` verdict, with Retry-After."""
    if response.status_code != 503:
        return None
    problem = response.json()
    assert str(problem.get("type", "")).endswith("/unavailable"), problem
    assert response.headers.get("retry-after"), response.headers
    return None
