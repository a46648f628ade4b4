"""The manager's pure parts: drift comparison and derived event ids."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from manager_worker.drift import compare
from manager_worker.outbox import caused_id
from schemas import RESOURCE_ADAPTER, ObservedResource

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def stored(kind: str, name: str, status: str = "active"):
    fields = {
        "vm": {"vcpus": 1, "memory_mb": 512, "image": "x"},
        "volume": {"size_gb": 1},
        "network": {"cidr": "10.0.0.0/8"},
    }[kind]
    return RESOURCE_ADAPTER.validate_python(
        {
            "kind": kind,
            "name": name,
            **fields,
            "id": str(uuid.uuid4()),
            "status": status,
            "host": "h-1",
            "version": 1,
            "created_at": T0,
            "updated_at": T0,
        }
    )


def seen(kind: str, name: str, status: str = "active") -> ObservedResource:
    return ObservedResource(kind=kind, name=name, status=status)  # type: ignore[arg-type]


def test_no_difference_is_no_drift():
    desired = [stored("vm", "a"), stored("volume", "d", "unreachable")]
    observed = [seen("volume", "d", "unreachable"), seen("vm", "a")]
    assert compare("h-1", desired, observed) is None
    assert compare("h-1", [], []) is None


def test_missing_unexpected_and_mismatched_sorted_by_kind_and_name():
    desired = [stored("vm", "b"), stored("vm", "a"), stored("volume", "a"), stored("vm", "c")]
    observed = [seen("vm", "z"), seen("vm", "c", "error"), seen("vm", "a"), seen("network", "a")]
    drift = compare("h-1", desired, observed)
    assert drift is not None and drift.host == "h-1"
    assert [(r.kind, r.name, r.status) for r in drift.missing] == [
        ("vm", "b", "active"),
        ("volume", "a", "active"),
    ]
    assert [(r.kind, r.name) for r in drift.unexpected] == [("network", "a"), ("vm", "z")]
    assert [(m.kind, m.name, m.desired_status, m.observed_status) for m in drift.mismatched] == [
        ("vm", "c", "active", "error")
    ]


def test_derived_ids_depend_on_cause_subject_and_type_only():
    cause = "7d3f0a64-3f38-4bb8-9a8e-2a4f3d2b9c11"
    one = caused_id(cause, "r-1", "resource.status_changed")
    assert one == caused_id(cause, "r-1", "resource.status_changed")
    assert uuid.UUID(one).version == 5
    others = {
        caused_id(cause, "r-2", "resource.status_changed"),
        caused_id(cause, "r-1", "resource.drift"),
        caused_id("another-cause", "r-1", "resource.status_changed"),
    }
    assert one not in others and len(others) == 3
