"""Derived event ids, pinned: a replay regenerates the very events the live workers published
only if every id a worker derives stays byte-for-byte the same across versions of govbus."""

from __future__ import annotations

from datetime import UTC, datetime

from discovery_worker._time import to_us
from discovery_worker.registry import Registry
from manager_worker.outbox import caused_id
from schemas import Heartbeat, Register

T0 = to_us(datetime(2026, 1, 1, tzinfo=UTC))
S = 1_000_000


def test_discovery_ids_are_pinned():
    reg = Registry(threshold=0.5, min_critical=1)
    event = Register(
        service="web",
        instance_id="web-1",
        address="10.0.0.1",
        port=80,
        ttl_s=10,
        deregister_after_s=20,
    )
    registered = reg.register(event, "reg-1", T0)
    unknown = reg.heartbeat(Heartbeat(service="web", instance_id="web-9"), "hb-9", T0 + S)
    missed = reg.advance(T0 + 11 * S)  # no heartbeat for a TTL: critical, then protection
    ids = [(d.event.TYPE, d.event_id) for d in [*registered, *unknown, *missed]]

    assert ids == [
        ("registry.instance.registered", "a8adf5b5-e988-53f7-bd24-ea92c7851f2d"),
        ("registry.instance.status_changed", "e58eb386-cc51-5ff1-aba0-618a2839bff9"),
        ("registry.heartbeat.unknown", "04b17b19-f688-5550-abfe-dae38a616372"),
        ("registry.instance.status_changed", "ffce4131-054b-56b8-aada-92c8a690e958"),
        ("registry.protection.entered", "5fef2494-192a-5f05-8ee1-8997c341feae"),
    ]


def test_manager_ids_are_pinned():
    assert caused_id("evt-3", "r-1", "resource.status_changed") == (
        "0bbfbaef-7daa-5635-807b-5ac72556ff42"
    )
    assert caused_id("evt-4", "host-1", "resource.drift") == (
        "afcd92f2-e383-5eeb-8744-d4414c80be75"
    )
