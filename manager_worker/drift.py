"""Comparing what a host agent reports with what should run on that host."""

from __future__ import annotations

from collections.abc import Iterable

from manager_worker.db import StoredResource
from schemas import DriftMismatch, ObservedResource, ResourceDrift


def compare(
    host: str, desired: Iterable[StoredResource], observed: Iterable[ObservedResource]
) -> ResourceDrift | None:
    """The differences, matched by `(kind, name)` and sorted by it; None when there are none.

    - `missing`: desired, not observed (with the desired status);
    - `unexpected`: observed, not desired;
    - `mismatched`: on both sides with different statuses.
    """
    want = {(r.kind, r.name): r for r in desired}
    seen = {(o.kind, o.name): o for o in observed}
    missing = [
        ObservedResource(kind=r.kind, name=r.name, status=r.status)
        for key, r in sorted(want.items())
        if key not in seen
    ]
    unexpected = [o for key, o in sorted(seen.items()) if key not in want]
    mismatched = [
        DriftMismatch(
            kind=o.kind, name=o.name, desired_status=want[key].status, observed_status=o.status
        )
        for key, o in sorted(seen.items())
        if key in want and want[key].status != o.status
    ]
    if not (missing or unexpected or mismatched):
        return None
    return ResourceDrift(host=host, missing=missing, unexpected=unexpected, mismatched=mismatched)
