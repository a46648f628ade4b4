"""The discovery worker end to end: events in, RPC answers and derived events out, on both
transports and both stores."""

from __future__ import annotations

import asyncio
import os
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bus import VirtualClock
from bus.errors import NotFound, Unavailable
from bus.message import Message, event_message
from bus.topology import EVENTS
from discovery_worker import SOURCE
from schemas import Deregister, Drain, Heartbeat
from tests._discovery import dead_letters, harness, instances, reg
from tests._wait import eventually

AMQP_URL = os.environ.get("GOVBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_URL = os.environ.get("GOVBUS_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


# --- tests -----------------------------------------------------------------------------------


async def test_register_heartbeat_query_pick_and_events(broker_url, tmp_path, unique):
    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        await h.publish(reg(unique, "a", tags=["eu"], meta={"zone": "z1"}))
        await h.publish(reg(unique, "b", weight=3))
        await eventually(lambda: len(h.worker.registry.by_service.get(unique, {})) == 2)

        view = await h.call("service", name=unique)
        assert view["index"] >= 2 and view["protection"] is False
        assert [i["instance_id"] for i in view["instances"]] == [f"{unique}-a", f"{unique}-b"]
        assert list(await instances(h, tag="eu")) == ["a"]
        assert list(await instances(h, meta={"zone": "z1"})) == ["a"]

        await h.publish(Heartbeat(service=unique, instance_id=f"{unique}-b", status="warning"))
        await eventually(lambda: h.worker.registry.instances[f"{unique}-b"].status == "warning")
        assert list(await instances(h, passing_only=True)) == ["a"]

        summary = await h.call("services")
        (mine,) = [s for s in summary["services"] if s["service"] == unique]
        assert (mine["instances"], mine["passing"], mine["warning"]) == (2, 1, 1)
        assert mine["tags"] == ["eu"]

        picks = [
            (await h.call("pick", service=unique))["instance"]["instance_id"] for _ in range(3)
        ]
        assert picks == [f"{unique}-a"] * 3  # the warning one only when no passing one
        one = await h.call("instance", instance_id=f"{unique}-b")
        assert one["instance"]["status"] == "warning" and one["instance"]["weight"] == 3
        state = await h.call("state")
        assert {f"{unique}-a", f"{unique}-b"} <= {i["instance_id"] for i in state["instances"]}

        with pytest.raises(NotFound):
            await h.call("instance", instance_id=f"{unique}-zzz")
        with pytest.raises(Unavailable, match="no passing or warning instance"):
            await h.call("pick", service=f"{unique}-none")

        await h.publish(Drain(service=unique, instance_id=f"{unique}-a"))
        await h.publish(Deregister(service=unique, instance_id=f"{unique}-b"))
        await eventually(lambda: len(h.of("registry.instance.deregistered")) == 1, timeout=10)
        await eventually(lambda: len(h.transitions()) == 4, timeout=10)
        assert h.transitions() == [
            (f"{unique}-a", None, "passing", "registered"),
            (f"{unique}-b", None, "passing", "registered"),
            (f"{unique}-b", "passing", "warning", "reported"),
            (f"{unique}-a", "passing", "draining", "drain_requested"),
        ]
        assert all(m.source == SOURCE for m, _ in h.events)
        with pytest.raises(Unavailable):
            await h.call("pick", service=unique)  # draining: listed, never picked
        assert list(await instances(h)) == ["a"]


async def test_duplicate_delivery_has_no_second_effect(broker_url, tmp_path, unique):
    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        registration = reg(unique, "a")
        await h.publish(registration, event_id="11111111-1111-4111-8111-111111111111")
        await eventually(lambda: f"{unique}-a" in h.worker.registry.instances)
        await h.publish(Deregister(service=unique, instance_id=f"{unique}-a"), event_id="dereg-1")
        await eventually(lambda: f"{unique}-a" not in h.worker.registry.instances)
        index = h.worker.registry.index
        # The same events again (a redelivery after a lost ack): nothing comes back.
        await h.publish(registration, event_id="11111111-1111-4111-8111-111111111111")
        await h.publish(Deregister(service=unique, instance_id=f"{unique}-a"), event_id="dereg-1")
        await h.publish(reg(unique, "marker"))
        await eventually(lambda: f"{unique}-marker" in h.worker.registry.instances)
        assert f"{unique}-a" not in h.worker.registry.instances
        assert h.worker.registry.index == index + 1  # only the marker's registration
        # The marker's events come after anything the duplicates could have caused.
        await eventually(lambda: len(h.of("registry.instance.registered")) == 2, timeout=10)
        assert [e.instance.instance_id for e in h.of("registry.instance.registered")] == [
            f"{unique}-a",
            f"{unique}-marker",
        ]
        assert len(h.of("registry.instance.deregistered")) == 1


async def test_bad_messages_are_dead_lettered_and_the_worker_keeps_serving(
    broker_url, tmp_path, unique
):
    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        transport = h.client.transport
        ids = {name: f"{unique}-{name}" for name in ("json", "port", "status")}
        not_json = event_message(
            event_type="registry.register",
            body=b"{not json",
            event_id=ids["json"],
            source="test",
            time=datetime.now(UTC),
        )
        await transport.publish(EVENTS, "registry.register", not_json)
        bad = {"service": unique, "instance_id": f"{unique}-bad", "address": "10.0.0.1", "port": 0}
        await h.client.publisher.publish_raw("registry.register", bad, event_id=ids["port"])
        sleepy = {"service": unique, "instance_id": f"{unique}-good", "status": "sleepy"}
        await h.client.publisher.publish_raw("registry.heartbeat", sleepy, event_id=ids["status"])
        no_time = Message(body=b"{}", message_id=f"{unique}-time", type="registry.heartbeat")
        await transport.publish(EVENTS, "registry.heartbeat", no_time)
        await h.publish(reg(unique, "good"))
        await eventually(lambda: f"{unique}-good" in h.worker.registry.instances)

        reasons = await dead_letters(h, 4)
        assert reasons["json"].startswith("invalid registry.register: body: Invalid JSON")
        assert reasons["port"].startswith("invalid registry.register: port")
        assert reasons["status"].startswith("invalid registry.heartbeat: status")
        assert reasons["time"].startswith("undecodable: the event time")
        assert list(await instances(h)) == ["good"]
        assert h.worker.ready


async def test_restart_keeps_the_registry(memory_url, db_url, unique):
    async with harness(memory_url, unique, db_url) as h:
        await h.publish(reg(unique, "a", tags=["x"], meta={"k": "v"}))
        await h.publish(reg(unique, "b"))
        await h.publish(
            Heartbeat(
                service=unique, instance_id=f"{unique}-b", status="warning", load=0.5, note="busy"
            )
        )
        await h.publish(Drain(service=unique, instance_id=f"{unique}-a"))
        await eventually(
            lambda: (
                h.worker.registry.instances.get(f"{unique}-a") is not None
                and h.worker.registry.instances[f"{unique}-a"].status == "draining"
            )
        )
        await eventually(lambda: h.worker.registry.instances[f"{unique}-b"].status == "warning")
        before = await h.call("service", name=unique)
        await h.stop_worker()
        await h.start_worker()
        after = await h.call("service", name=unique)
        assert after["instances"] == before["instances"]
        assert after["index"] == before["index"]
        b = after["instances"][1]
        assert (b["status"], b["load"], b["note"]) == ("warning", 0.5, "busy")
        # What was published before the restart was marked sent: nothing goes out twice.
        await h.worker.settle()
        await eventually(lambda: len(h.transitions()) == 4)
        assert len(h.of("registry.instance.registered")) == 2
        assert len({m.id for m, _ in h.events}) == len(h.events)


async def test_restart_judges_instances_by_their_real_last_heartbeat(memory_url, tmp_path, unique):
    clock = VirtualClock(T0)
    db = f"sqlite+aiosqlite:///{tmp_path}/d.db"
    async with harness(memory_url, unique, db, clock=clock) as h:
        await h.publish(reg(unique, "a", ttl_s=10, deregister_after_s=20))
        await h.publish(reg(unique, "b", ttl_s=10, deregister_after_s=20))
        await eventually(lambda: len(h.worker.registry.instances) == 2)
        await clock.advance(5)
        await h.publish(Heartbeat(service=unique, instance_id=f"{unique}-b"))
        await eventually(
            lambda: (
                h.worker.registry.instances[f"{unique}-b"].last_heartbeat
                > h.worker.registry.instances[f"{unique}-a"].last_heartbeat
            )
        )
        await h.stop_worker()
        await clock.advance(20)  # down from T0+5 to T0+25: a missed at 10 and expired at 30
        await h.start_worker()
        registry = h.worker.registry
        assert registry.instances[f"{unique}-a"].status == "critical"
        assert registry.instances[f"{unique}-b"].status == "critical"
        await clock.advance(6)  # T0+31: a expired at 30; b (missed at 15) expires at 35
        await eventually(lambda: f"{unique}-a" not in registry.instances)
        assert f"{unique}-b" in registry.instances
        await h.worker.settle()
        await eventually(lambda: len(h.of("registry.instance.expired")) == 1)
        times = {
            (m.type, getattr(e, "reason", ""), e.instance_id): m.time
            for m, e in h.events
            if m.type != "registry.instance.registered"
        }
        assert times[("registry.instance.status_changed", "heartbeat_missed", f"{unique}-a")] == (
            T0 + timedelta(seconds=10)
        )
        assert times[("registry.instance.status_changed", "heartbeat_missed", f"{unique}-b")] == (
            T0 + timedelta(seconds=15)
        )
        assert times[
            ("registry.instance.expired", "heartbeat_missed", f"{unique}-a")
        ] == T0 + timedelta(seconds=30)


async def test_expiry_fires_within_a_second_on_the_wall_clock(memory_url, tmp_path, unique):
    async with harness(memory_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        await h.publish(reg(unique, "a", ttl_s=0.4, deregister_after_s=0.4))
        await eventually(lambda: f"{unique}-a" in h.worker.registry.instances)
        await eventually(lambda: h.of("registry.instance.expired"), timeout=5)
        missed = [m for m, e in h.events if getattr(e, "reason", "") == "heartbeat_missed"]
        (expired,) = [m for m, _ in h.events if m.type == "registry.instance.expired"]
        assert (expired.time - missed[0].time) == timedelta(seconds=0.4)
        # Published promptly: the event's time (the due time) is close to the wall clock.
        assert abs((datetime.now(UTC) - expired.time).total_seconds()) < 1.0


async def test_protection_through_the_worker_on_a_virtual_clock(memory_url, tmp_path, unique):
    clock = VirtualClock(T0)
    async with harness(
        memory_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db", clock=clock
    ) as h:
        for i in range(4):
            await h.publish(reg(unique, f"i{i}", ttl_s=10, deregister_after_s=10))
        await eventually(lambda: len(h.worker.registry.instances) == 4)
        await clock.advance(5)
        await h.publish(Heartbeat(service=unique, instance_id=f"{unique}-i3"))
        await eventually(
            lambda: (
                h.worker.registry.instances[f"{unique}-i3"].last_heartbeat
                == h.worker.registry.instances[f"{unique}-i3"].registered_at + 5_000_000
            )
        )
        await clock.advance(100)
        await eventually(lambda: h.worker.registry.protection)
        await h.worker.settle()
        await eventually(lambda: h.of("registry.protection.entered"))
        assert len(h.worker.registry.instances) == 4  # kept, though long overdue
        for i in range(2):  # half of them come back: that ends it
            await h.publish(Heartbeat(service=unique, instance_id=f"{unique}-i{i}"))
        await eventually(lambda: not h.worker.registry.protection)
        await eventually(lambda: h.of("registry.protection.exited"))
        reasons = {(e.instance_id, e.reason) for e in h.of("registry.instance.status_changed")}
        assert (f"{unique}-i0", "recovered") in reasons
        view = await h.call("service", name=unique)
        assert view["protection"] is False and len(view["instances"]) == 4
        await clock.advance(9)  # the silent ones get one more TTL after protection ends
        assert len(h.worker.registry.instances) == 4
        await clock.advance(1)
        await eventually(lambda: len(h.worker.registry.instances) == 2)


def vm(resource_id: str, host: str, version: int) -> Any:
    from schemas import RESOURCE_ADAPTER

    return RESOURCE_ADAPTER.validate_python(
        {
            "kind": "vm",
            "id": resource_id,
            "name": f"vm-{resource_id[:8]}",
            "vcpus": 1,
            "memory_mb": 512,
            "image": "debian-12",
            "status": "active",
            "observed_status": "active",
            "host": host,
            "version": version,
            "created_at": T0,
            "updated_at": T0,
        }
    )


async def test_least_loaded_counts_resources_learnt_from_resource_events(
    broker_url, tmp_path, unique
):
    from schemas import ResourceCreated, ResourceDeleted, ResourceUpdated

    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        for name in ("a", "b"):
            await h.publish(reg(unique, name))
        await eventually(lambda: len(h.worker.registry.by_service.get(unique, {})) == 2)

        async def least() -> str:
            picked = await h.call("pick", service=unique, strategy="least_loaded")
            return picked["instance"]["instance_id"].removeprefix(unique + "-")

        assert await least() == "a"  # a tie: by id
        r1, r2 = str(uuid.uuid4()), str(uuid.uuid4())
        await h.publish(ResourceCreated(resource=vm(r1, f"{unique}-a", 1), version=1))
        await eventually(lambda: h.worker.registry.placed.get(f"{unique}-a") == 1)
        assert await least() == "b"
        await h.publish(ResourceCreated(resource=vm(r2, f"{unique}-b", 1), version=1))
        await h.publish(ResourceUpdated(resource=vm(r1, f"{unique}-b", 2), version=2))
        await eventually(lambda: h.worker.registry.placed.get(f"{unique}-b") == 2)
        assert await least() == "a"
        # A stale duplicate changes nothing; a deletion frees the host.
        await h.publish(ResourceCreated(resource=vm(r1, f"{unique}-a", 1), version=1))
        await h.publish(ResourceDeleted(resource=vm(r2, f"{unique}-b", 2), version=2))
        await eventually(lambda: h.worker.registry.placed.get(f"{unique}-b") == 1)
        assert h.worker.registry.placed.get(f"{unique}-a", 0) == 0
        # Placements survive a restart.
        await h.stop_worker()
        await h.start_worker()
        assert h.worker.registry.placed.get(f"{unique}-b") == 1
        await h.publish(Heartbeat(service=unique, instance_id=f"{unique}-a", load=0.9))
        await eventually(lambda: h.worker.registry.instances[f"{unique}-a"].load == 0.9)
        assert await least() == "b"  # load first, then resources


async def test_events_committed_but_not_published_go_out_on_restart(memory_url, tmp_path, unique):
    from pydantic_core import to_json

    from bus.store import Store, add_to_outbox, create_engine
    from schemas import InstanceDeregistered

    db = f"sqlite+aiosqlite:///{tmp_path}/d.db"
    async with harness(memory_url, unique, db) as h:
        # Right after start: stopping must not hang (nor cancel a store call mid-flight).
        await asyncio.wait_for(h.stop_worker(), 10)
        assert not any(t.done() for t in h.capture._workers)
        # As a crash between the flush's commit and the relay would leave it:
        store = Store(create_engine(db))
        event = InstanceDeregistered(service=unique, instance_id=f"{unique}-x")
        async with store.unit_of_work() as session:
            add_to_outbox(
                session,
                event_id="crash-left-1",
                event_type=event.TYPE,
                source=SOURCE,
                time=T0,
                body=to_json(event),
            )
        await store.close()
        await h.start_worker()
        await eventually(lambda: h.of("registry.instance.deregistered"), what="relayed")
        ((meta, _),) = [(m, e) for m, e in h.events if m.type == event.TYPE]
        assert (meta.id, meta.source, meta.time) == ("crash-left-1", SOURCE, T0)


async def test_a_redelivery_after_a_restart_has_no_second_effect(memory_url, db_url, unique):
    async with harness(memory_url, unique, db_url) as h:
        registration = reg(unique, "a")
        await h.publish(registration, event_id="22222222-2222-4222-8222-222222222222")
        await eventually(lambda: f"{unique}-a" in h.worker.registry.instances)
        await h.publish(Deregister(service=unique, instance_id=f"{unique}-a"))
        await eventually(lambda: f"{unique}-a" not in h.worker.registry.instances)
        await h.stop_worker()
        await h.start_worker()
        assert "22222222-2222-4222-8222-222222222222" in h.worker.journal.processed
        await h.publish(registration, event_id="22222222-2222-4222-8222-222222222222")
        await h.publish(reg(unique, "marker"))
        await eventually(lambda: f"{unique}-marker" in h.worker.registry.instances)
        assert f"{unique}-a" not in h.worker.registry.instances
