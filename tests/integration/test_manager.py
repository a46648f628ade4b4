"""The manager worker end to end: RPC in, rows and outbox events out, reactions to the registry.

Runs over the embedded broker and RabbitMQ (`broker_url`) and over SQLite and PostgreSQL
(`db_url`, a fresh database per test). Discovery here is a small fake serving `discovery.pick`
(least loaded passing host); tests/integration/test_manager_discovery.py places VMs through
the real discovery worker.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import pytest

from bus.errors import Conflict, Invalid, NotFound, Unavailable
from bus.store import OutboxRow
from manager_worker import SOURCE
from manager_worker.db import ResourceRow
from manager_worker.outbox import caused_id
from schemas import (
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    ObservedResource,
    ResourceObserved,
)
from tests._manager import (
    MANAGER_TYPES,
    T0,
    Harness,
    harness,
    hid,
    host,
    status_changed,
)
from tests._wait import eventually

# --- fixtures and helpers (the harness is in tests/_manager.py) ------------------------------


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path}/manager.db"


def vm_spec(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "kind": "vm",
        "name": name,
        "vcpus": 2,
        "memory_mb": 2048,
        "image": "debian-12",
        **extra,
    }


def summary(h: Harness, *types: str) -> list[tuple[str, str, int, str]]:
    return [
        (m.type, e.resource.name, e.version, e.resource.status)
        for m, e in h.events(*types)
        if m.type != "resource.drift"
    ]


# --- create, update, delete ------------------------------------------------------------------


async def test_create_update_delete_with_versions(broker_url, db_url, unique):
    async with harness(broker_url, db_url, unique) as h:
        h.hosts.append(host(hid("h-1"), load=0.5))
        vm = await h.vm("web-1")
        assert (vm["status"], vm["host"], vm["version"]) == ("active", hid("h-1"), 2)
        assert vm["created_at"] == vm["updated_at"] == "2026-03-01T12:00:00Z"
        net = await h.create(kind="network", name="lan", cidr="10.1.0.0/16")
        assert (net["status"], net["host"], net["version"]) == ("active", None, 1)
        vol = await h.create(kind="volume", name="data", size_gb=10, attached_to="web-1")
        assert (vol["host"], vol["version"], vol["attached_to"]) == (hid("h-1"), 1, "web-1")

        await h.clock.advance(60)
        updated = await h.call(
            "manager.update",
            name="web-1",
            expected_version=2,
            changes={"vcpus": 4, "labels": {"tier": "web"}},
        )
        assert (updated["vcpus"], updated["labels"], updated["version"]) == (4, {"tier": "web"}, 3)
        assert updated["updated_at"] == "2026-03-01T12:01:00Z"
        assert updated["created_at"] == vm["created_at"]
        assert await h.resource("web-1") == updated

        detached = await h.call(
            "manager.update", name="data", expected_version=1, changes={"attached_to": None}
        )
        assert (detached["attached_to"], detached["host"], detached["version"]) == (None, None, 2)
        gone = await h.call("manager.delete", name="data", expected_version=2)
        assert gone == {"name": "data", "deleted": True, "version": 3}
        gone = await h.call("manager.delete", name="web-1")
        assert gone["version"] == 4
        with pytest.raises(NotFound):
            await h.resource("web-1")
        page = await h.call("manager.resources")
        assert [r["name"] for r in page["items"]] == ["lan"]

        await h.wait_events(8, *MANAGER_TYPES[:4])
        assert summary(h) == [
            ("resource.created", "web-1", 1, "pending"),
            ("resource.status_changed", "web-1", 2, "active"),
            ("resource.created", "lan", 1, "active"),
            ("resource.created", "data", 1, "active"),
            ("resource.updated", "web-1", 3, "active"),
            ("resource.updated", "data", 2, "active"),
            ("resource.deleted", "data", 3, "active"),
            ("resource.deleted", "web-1", 4, "active"),
        ]
        # Not drift: other runs' resource.observed on the shared broker may cause some here.
        metas = [m for m, _ in h.events(*MANAGER_TYPES[:4])]
        assert {m.source for m in metas} == {SOURCE}
        assert len({m.id for m in metas}) == 8
        _, placed = h.events("resource.status_changed")[0]
        assert (placed.previous, placed.reason, placed.resource.host) == (
            "pending",
            "placed",
            hid("h-1"),
        )
        _, changed = h.events("resource.updated")[0]
        assert changed.changed == ["labels", "vcpus"]


async def test_listing_filters_and_pages(memory_url, sqlite_url, unique):
    async with harness(memory_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        for i in range(5):
            await h.create(
                kind="network",
                name=f"net-{i}",
                cidr=f"10.{i}.0.0/16",
                labels={"env": "prod" if i % 2 else "dev"},
            )
        await h.vm("vm-a", labels={"env": "prod"})
        page = await h.call("manager.resources", kind="network", limit=2)
        assert [r["name"] for r in page["items"]] == ["net-0", "net-1"] and page["next"]
        page = await h.call("manager.resources", kind="network", limit=2, cursor=page["next"])
        assert [r["name"] for r in page["items"]] == ["net-2", "net-3"]
        page = await h.call("manager.resources", kind="network", limit=2, cursor=page["next"])
        assert [r["name"] for r in page["items"]] == ["net-4"] and page["next"] is None
        prod = await h.call("manager.resources", label={"env": "prod"})
        assert [r["name"] for r in prod["items"]] == ["net-1", "net-3", "vm-a"]
        vms = await h.call("manager.resources", status="active", kind="vm")
        assert [r["name"] for r in vms["items"]] == ["vm-a"]
        assert (await h.call("manager.resources", status="unreachable"))["items"] == []


async def test_conflicts(memory_url, db_url, unique):
    async with harness(memory_url, db_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        await h.vm("web-1")
        await h.create(kind="volume", name="data", size_gb=1, attached_to="web-1")
        await h.settled()
        rows, events = await h.count(ResourceRow), await h.count(OutboxRow)

        with pytest.raises(Conflict, match="already exists"):
            await h.vm("web-1")
        with pytest.raises(Conflict, match="already exists"):
            await h.create(kind="network", name="data", cidr="10.0.0.0/8")
        with pytest.raises(Conflict) as stale:
            await h.call("manager.update", name="web-1", expected_version=1, changes={"vcpus": 8})
        assert stale.value.details == {"name": "web-1", "expected_version": 1, "version": 2}
        with pytest.raises(Conflict):
            await h.call("manager.delete", name="web-1", expected_version=1)
        with pytest.raises(Conflict, match="detach them first"):
            await h.call("manager.delete", name="web-1")
        with pytest.raises(NotFound):
            await h.call("manager.update", name="nope", expected_version=1, changes={"vcpus": 8})
        with pytest.raises(NotFound):
            await h.call("manager.delete", name="nope")

        assert (await h.count(ResourceRow), await h.count(OutboxRow)) == (rows, events)
        assert (await h.resource("web-1"))["version"] == 2


INVALID = [
    ("unknown kind", "manager.create", {"spec": {"kind": "container", "name": "x"}}, "spec"),
    (
        "negative size",
        "manager.create",
        {"spec": {"kind": "volume", "name": "v", "size_gb": -1}},
        "size_gb",
    ),
    (
        "host bits in cidr",
        "manager.create",
        {"spec": {"kind": "network", "name": "n", "cidr": "10.0.0.1/24"}},
        "cidr",
    ),
    (
        "not a cidr",
        "manager.create",
        {"spec": {"kind": "network", "name": "n", "cidr": "ten-dot-oh"}},
        "cidr",
    ),
    ("wildcard name", "manager.create", {"spec": vm_spec("web-*")}, "name"),
    ("name over 63", "manager.create", {"spec": vm_spec("a" * 64)}, "name"),
    ("unknown field", "manager.create", {"spec": vm_spec("ok", colour="red")}, "colour"),
    (
        "missing expected_version",
        "manager.update",
        {"name": "base", "changes": {"vcpus": 4}},
        "expected_version",
    ),
    (
        "field of another kind",
        "manager.update",
        {"name": "base", "expected_version": 2, "changes": {"cidr": "10.0.0.0/8"}},
        "changes.cidr",
    ),
    (
        "empty patch",
        "manager.update",
        {"name": "base", "expected_version": 2, "changes": {}},
        "changes",
    ),
    (
        "attach to a missing vm",
        "manager.create",
        {"spec": {"kind": "volume", "name": "v", "size_gb": 1, "attached_to": "ghost"}},
        "spec.attached_to",
    ),
    (
        "attach to a network",
        "manager.create",
        {"spec": {"kind": "volume", "name": "v", "size_gb": 1, "attached_to": "lan"}},
        "spec.attached_to",
    ),
]


async def test_bad_input_is_invalid_naming_the_field_and_changes_nothing(
    memory_url, sqlite_url, unique
):
    async with harness(memory_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        await h.vm("base")
        await h.create(kind="network", name="lan", cidr="10.9.0.0/16")
        await h.settled()
        rows, events, published = await h.count(ResourceRow), await h.count(OutboxRow), len(h.seen)
        for what, method, params, field_name in INVALID:
            with pytest.raises(Invalid) as caught:
                await h.client.call(h.method(method), params, timeout=5.0)
            fields = [e["field"] for e in caught.value.details["errors"]]
            assert any(field_name in f for f in fields), (what, fields)
            assert field_name in caught.value.message, (what, caught.value.message)
        assert (await h.count(ResourceRow), await h.count(OutboxRow)) == (rows, events)
        assert len(h.seen) == published


# --- placement ---------------------------------------------------------------------------------


async def test_vm_goes_to_the_least_loaded_passing_host(memory_url, sqlite_url, unique):
    async with harness(memory_url, sqlite_url, unique) as h:
        h.hosts.extend(
            [
                host(hid("h-busy"), load=0.9),
                host(hid("h-idle"), load=0.1),
                host(hid("h-down"), load=0.0, status="critical"),
            ]
        )
        assert (await h.vm("web-1"))["host"] == hid("h-idle")


async def test_no_healthy_host_is_unavailable_and_writes_nothing(memory_url, sqlite_url, unique):
    async with harness(memory_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-down"), status="critical"))
        with pytest.raises(Unavailable) as caught:
            await h.vm("web-1")
        assert caught.value.details["reason"] == "no_healthy_host"
        assert (await h.count(ResourceRow), await h.count(OutboxRow)) == (0, 0)
        # Networks and volumes need no host.
        assert (await h.create(kind="network", name="lan", cidr="10.0.0.0/8"))["version"] == 1


async def test_discovery_down_is_unavailable_quickly(broker_url, sqlite_url, unique):
    async with harness(broker_url, sqlite_url, unique, discovery=False) as h:
        began = time.monotonic()
        with pytest.raises(Unavailable) as caught:
            await h.vm("web-1")
        assert time.monotonic() - began < 1.5
        assert caught.value.details["reason"] in ("discovery_unavailable", "circuit_open")
        assert (await h.count(ResourceRow), await h.count(OutboxRow)) == (0, 0)


# --- host health -------------------------------------------------------------------------------


async def test_host_failure_makes_resources_unreachable_and_back(broker_url, sqlite_url, unique):
    async with harness(broker_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        web = await h.vm("web-1")
        vol = await h.create(kind="volume", name="data", size_gb=1, attached_to="web-1")
        h.hosts[:] = [host(hid("h-2"))]
        await h.vm("web-2")
        await h.wait_events(5)

        cause, at = str(uuid.uuid4()), T0 + timedelta(minutes=5)
        await h.feed(
            status_changed(hid("h-1"), "passing", "critical", "heartbeat_missed"),
            event_id=cause,
            at=at,
        )
        assert (await h.resource("web-1"))["status"] == "unreachable"
        assert (await h.resource("data"))["status"] == "unreachable"
        assert (await h.resource("web-2"))["status"] == "active"
        await h.wait_events(4, "resource.status_changed")
        lost = h.events("resource.status_changed")[2:]
        assert {(e.resource.name, e.previous, e.status, e.reason) for _, e in lost} == {
            ("data", "active", "unreachable", "host_critical"),
            ("web-1", "active", "unreachable", "host_critical"),
        }
        ids = {web["id"]: "web-1", vol["id"]: "data"}
        for meta, event in lost:
            assert meta.id == caused_id(cause, event.resource.id, "resource.status_changed")
            assert meta.time == at == event.resource.updated_at
            assert ids[event.resource.id] == event.resource.name

        # Another service's instance going critical is none of the manager's business.
        await h.feed(
            status_changed(hid("h-2"), "passing", "critical", "heartbeat_missed", "web"),
            event_id=str(uuid.uuid4()),
            at=at,
        )
        assert (await h.resource("web-2"))["status"] == "active"

        await h.feed(
            status_changed(hid("h-1"), "critical", "passing", "recovered"),
            event_id=str(uuid.uuid4()),
            at=at + timedelta(seconds=30),
        )
        web_now = await h.resource("web-1")
        assert (web_now["status"], web_now["version"]) == ("active", 4)
        assert (await h.resource("data"))["status"] == "active"

        await h.feed(
            InstanceExpired(service="host", instance_id=hid("h-2")),
            event_id=str(uuid.uuid4()),
            at=at + timedelta(minutes=2),
        )
        assert (await h.resource("web-2"))["status"] == "unreachable"
        await h.feed(
            InstanceRegistered(instance=host(hid("h-2"))),
            event_id=str(uuid.uuid4()),
            at=at + timedelta(minutes=3),
        )
        assert (await h.resource("web-2"))["status"] == "active"
        await h.feed(
            InstanceDeregistered(service="host", instance_id=hid("h-2")),
            event_id=str(uuid.uuid4()),
            at=at + timedelta(minutes=4),
        )
        assert (await h.resource("web-2"))["status"] == "unreachable"

        await h.wait_events(9, "resource.status_changed")
        reasons = [(e.resource.name, e.reason) for _, e in h.events("resource.status_changed")[4:]]
        assert sorted(reasons[:2]) == [("data", "host_recovered"), ("web-1", "host_recovered")]
        assert reasons[2:] == [
            ("web-2", "host_expired"),
            ("web-2", "host_registered"),
            ("web-2", "host_deregistered"),
        ]


async def test_duplicate_delivery_has_no_second_effect(memory_url, db_url, unique):
    async with harness(memory_url, db_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        await h.vm("web-1")
        cause = str(uuid.uuid4())
        event = status_changed(hid("h-1"), "passing", "critical", "heartbeat_missed")
        await h.feed(event, event_id=cause, at=T0)
        await h.settled()
        rows = await h.count(OutboxRow)
        await h.feed(event, event_id=cause, at=T0)  # the same event again
        assert await h.count(OutboxRow) == rows
        assert (await h.resource("web-1"))["version"] == 3

        observed = ResourceObserved(host=hid("h-1"), resources=[])
        drift_cause = str(uuid.uuid4())
        await h.feed(observed, event_id=drift_cause, at=T0)
        await h.feed(observed, event_id=drift_cause, at=T0)
        await h.settled()
        assert await h.count(OutboxRow) == rows + 1
        await h.wait_events(1, "resource.drift")
        assert len(h.events("resource.status_changed")) == 2


# --- drift -------------------------------------------------------------------------------------


async def test_drift_reports_missing_unexpected_and_mismatched(memory_url, sqlite_url, unique):
    async with harness(memory_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        await h.vm("web-1")
        await h.vm("web-2")
        await h.create(kind="volume", name="data", size_gb=1, attached_to="web-1")
        h.hosts[:] = [host(hid("h-2"))]
        await h.vm("elsewhere")

        in_sync = ResourceObserved(
            host=hid("h-1"),
            resources=[
                ObservedResource(kind="vm", name="web-1", status="active"),
                ObservedResource(kind="vm", name="web-2", status="active"),
                ObservedResource(kind="volume", name="data", status="active"),
            ],
        )
        await h.feed(in_sync, event_id=str(uuid.uuid4()), at=T0)

        cause, at = str(uuid.uuid4()), T0 + timedelta(minutes=1)
        report = ResourceObserved(
            host=hid("h-1"),
            resources=[
                ObservedResource(kind="vm", name="web-1", status="active"),
                ObservedResource(kind="vm", name="web-2", status="error"),
                ObservedResource(kind="vm", name="stray", status="active"),
                ObservedResource(kind="volume", name="web-1", status="active"),
            ],
        )
        await h.feed(report, event_id=cause, at=at)
        ((meta, drift),) = await h.wait_events(1, "resource.drift")
        assert meta.id == caused_id(cause, hid("h-1"), "resource.drift")
        assert meta.time == at and meta.source == SOURCE
        assert drift.host == hid("h-1")
        assert [(r.kind, r.name, r.status) for r in drift.missing] == [("volume", "data", "active")]
        assert [(r.kind, r.name) for r in drift.unexpected] == [
            ("vm", "stray"),
            ("volume", "web-1"),
        ]
        assert [(m.name, m.desired_status, m.observed_status) for m in drift.mismatched] == [
            ("web-2", "active", "error")
        ]
        # Drift is reported, not acted upon: the inventory is unchanged.
        assert (await h.resource("web-2"))["status"] == "active"


async def test_a_volume_lives_where_its_vm_does(memory_url, sqlite_url, unique):
    async with harness(memory_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        await h.vm("web-1")
        h.hosts[:] = [host(hid("h-2"))]
        await h.vm("web-2")
        await h.feed(
            status_changed(hid("h-1"), "passing", "critical", "heartbeat_missed"),
            event_id=str(uuid.uuid4()),
            at=T0,
        )
        late = await h.create(kind="volume", name="late", size_gb=1, attached_to="web-1")
        assert (late["host"], late["status"]) == (hid("h-1"), "unreachable")
        moved = await h.call(
            "manager.update", name="late", expected_version=1, changes={"attached_to": "web-2"}
        )
        assert (moved["host"], moved["status"], moved["version"]) == (hid("h-2"), "active", 2)
        loose = await h.call(
            "manager.update", name="late", expected_version=2, changes={"attached_to": None}
        )
        assert (loose["host"], loose["status"]) == (None, "active")
        ((_, event),) = [
            (m, e) for m, e in await h.wait_events(2, "resource.updated") if e.version == 2
        ]
        assert event.changed == ["attached_to"]


async def test_a_malformed_event_is_dead_lettered_and_the_worker_goes_on(
    broker_url, sqlite_url, unique
):
    async with harness(broker_url, sqlite_url, unique) as h:
        h.hosts.append(host(hid("h-1")))
        await h.vm("web-1")
        stats = h.worker.consumer.stats  # type: ignore[union-attr]
        await h.client.publisher.publish_raw(
            "resource.observed",
            {"host": hid("h-1"), "resources": [{"kind": "vm", "name": "Web_1"}]},
        )
        await eventually(lambda: stats.dead_lettered == 1, what="dead-lettered")
        ready, _ = await h.client.transport.queue_state(f"{unique}.manager.dlq")
        assert ready == 1  # the dead-letter copy was confirmed before the original was acked
        # The next event is handled as usual.
        await h.feed(
            status_changed(hid("h-1"), "passing", "critical", "heartbeat_missed"),
            event_id=str(uuid.uuid4()),
            at=T0,
        )
        assert (await h.resource("web-1"))["status"] == "unreachable"


async def test_a_vm_placed_on_a_host_that_just_failed_starts_unreachable(
    memory_url, db_url, unique
):
    async with harness(memory_url, db_url, unique) as h:
        # Discovery's answer is older than the registry event the manager already handled.
        h.hosts.append(host(hid("h-1")))
        await h.feed(
            status_changed(hid("h-1"), "passing", "critical", "heartbeat_missed"),
            event_id=str(uuid.uuid4()),
            at=T0,
        )
        vm = await h.vm("web-1")
        assert (vm["host"], vm["status"], vm["version"]) == (hid("h-1"), "unreachable", 2)
        await h.feed(
            status_changed(hid("h-1"), "critical", "passing", "recovered"),
            event_id=str(uuid.uuid4()),
            at=T0 + timedelta(seconds=5),
        )
        assert (await h.resource("web-1"))["status"] == "active"
        # Draining is recorded but moves nothing.
        await h.feed(
            status_changed(hid("h-1"), "passing", "draining", "drain_requested"),
            event_id=str(uuid.uuid4()),
            at=T0 + timedelta(seconds=6),
        )
        assert (await h.resource("web-1"))["version"] == 3
        changes = [
            (e.previous, e.status, e.reason)
            for _, e in await h.wait_events(2, "resource.status_changed")
        ]
        assert changes == [
            ("pending", "unreachable", "placed_on_critical_host"),
            ("unreachable", "active", "host_recovered"),
        ]
