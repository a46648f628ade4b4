"""The registry's logic alone: transitions and their reasons, expiry, protection, picks."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import pytest

from bus.errors import Unavailable
from discovery_worker._time import to_us
from discovery_worker.balancer import Balancer
from discovery_worker.registry import Registry
from schemas import Deregister, Drain, Heartbeat, Register

T0 = to_us(datetime(2026, 1, 1, tzinfo=UTC))
S = 1_000_000  # one second in microseconds


def register(reg: Registry, iid: str, at: float = 0, service: str = "web", **kw) -> list:
    kw = {"address": "10.0.0.1", "port": 80, "ttl_s": 10, "deregister_after_s": 20, **kw}
    event = Register(service=service, instance_id=iid, **kw)
    return reg.register(event, f"reg-{iid}-{at}", T0 + int(at * S))


def beat(reg: Registry, iid: str, at: float, service: str = "web", **kw) -> list:
    event = Heartbeat(service=service, instance_id=iid, **kw)
    return reg.heartbeat(event, f"hb-{iid}-{at}", T0 + int(at * S))


def types(derived) -> list[str]:
    return [d.event.TYPE for d in derived]


def transitions(derived) -> list[tuple]:
    return [
        (d.event.instance_id, d.event.previous, d.event.status, d.event.reason)
        for d in derived
        if d.event.TYPE == "registry.instance.status_changed"
    ]


def test_register_then_heartbeat_statuses_each_with_its_reason():
    reg = Registry()
    out = register(reg, "a")
    assert types(out) == ["registry.instance.registered", "registry.instance.status_changed"]
    assert transitions(out) == [("a", None, "passing", "registered")]
    index = reg.index
    assert transitions(beat(reg, "a", 1, status="warning")) == [
        ("a", "passing", "warning", "reported")
    ]
    assert transitions(beat(reg, "a", 2, status="critical")) == [
        ("a", "warning", "critical", "reported")
    ]
    assert transitions(beat(reg, "a", 3)) == [("a", "critical", "passing", "reported")]
    assert beat(reg, "a", 4) == []  # same status: no event, but the heartbeat is applied
    assert reg.instances["a"].last_heartbeat == T0 + 4 * S
    assert reg.index > index


def test_missed_heartbeat_recovery_and_expiry_at_their_due_times():
    reg = Registry()
    register(reg, "a")
    assert reg.next_due() == T0 + 10 * S
    assert reg.advance(T0 + 10 * S - 1) == []
    out = reg.advance(T0 + 10 * S)
    assert transitions(out) == [("a", "passing", "critical", "heartbeat_missed")]
    assert out[0].time_us == T0 + 10 * S  # the due time, not when the timer ran
    assert transitions(beat(reg, "a", 12)) == [("a", "critical", "passing", "recovered")]
    # Silent again: critical at 22, removed 20 s later at 42.
    reg.advance(T0 + 22 * S)
    assert reg.instances["a"].status == "critical"
    assert reg.advance(T0 + 42 * S - 1) == []
    (expired,) = reg.advance(T0 + 42 * S)
    assert expired.event.TYPE == "registry.instance.expired"
    assert expired.time_us == T0 + 42 * S
    assert expired.event.last_heartbeat == datetime(2026, 1, 1, 0, 0, 12, tzinfo=UTC)
    assert "a" not in reg.instances and reg.by_service == {}


def test_late_timer_derives_each_transition_at_its_own_time_with_stable_ids():
    def run() -> list:
        reg = Registry()
        register(reg, "a")
        return reg.advance(T0 + 100 * S)  # the timer woke very late

    first, second = run(), run()
    assert types(first) == ["registry.instance.status_changed", "registry.instance.expired"]
    assert [d.time_us for d in first] == [T0 + 10 * S, T0 + 30 * S]
    assert [d.event_id for d in first] == [d.event_id for d in second]


def test_stale_and_duplicate_heartbeats_have_no_effect():
    reg = Registry()
    register(reg, "a")
    beat(reg, "a", 5, status="warning")
    index = reg.index
    assert beat(reg, "a", 5, status="warning") == []  # the same heartbeat again
    assert beat(reg, "a", 4, status="critical") == []  # older than the last one
    assert reg.index == index and reg.instances["a"].status == "warning"


def test_unknown_heartbeat_changes_nothing_but_says_so():
    reg = Registry()
    register(reg, "a")
    index = reg.index
    (unknown,) = beat(reg, "ghost", 1)
    assert unknown.event.TYPE == "registry.heartbeat.unknown"
    assert unknown.event.instance_id == "ghost"
    (other,) = beat(reg, "a", 1, service="api")  # known id, another service
    assert other.event.TYPE == "registry.heartbeat.unknown"
    assert reg.index == index and set(reg.instances) == {"a"}
    assert unknown.event_id == beat(Registry(), "ghost", 1)[0].event_id


def test_drain_keeps_listing_and_survives_heartbeats():
    reg = Registry()
    register(reg, "a")
    out = reg.drain(Drain(service="web", instance_id="a"), "d1", T0 + S)
    assert transitions(out) == [("a", "passing", "draining", "drain_requested")]
    assert reg.drain(Drain(service="web", instance_id="a"), "d2", T0 + S) == []
    assert beat(reg, "a", 2) == [] and reg.instances["a"].status == "draining"
    reg.advance(T0 + 12 * S)
    assert reg.instances["a"].status == "critical"
    assert transitions(beat(reg, "a", 13)) == [("a", "critical", "draining", "recovered")]


def test_reregistration_updates_moves_and_resets():
    reg = Registry()
    register(reg, "a")
    reg.drain(Drain(service="web", instance_id="a"), "d", T0 + S)
    assert register(reg, "a", at=2) != []  # unchanged fields, but draining -> passing
    out = register(reg, "a", at=3, port=81)
    assert types(out) == ["registry.instance.registered"]
    assert reg.instances["a"].port == 81
    out = register(reg, "a", at=4, service="api")
    assert "registry.instance.registered" in types(out)
    assert set(reg.by_service) == {"api"} and reg.instances["a"].service == "api"
    assert register(reg, "a", at=5, service="api") == []  # nothing changed


def test_reregistering_a_critical_instance_says_why():
    reg = Registry()
    register(reg, "a")
    reg.advance(T0 + 11 * S)
    assert transitions(register(reg, "a", at=12)) == [("a", "critical", "passing", "reregistered")]


def test_deregister_removes_and_is_idempotent():
    reg = Registry()
    register(reg, "a")
    out = reg.deregister(Deregister(service="web", instance_id="a"), "x", T0 + S)
    assert types(out) == ["registry.instance.deregistered"]
    assert reg.deregister(Deregister(service="web", instance_id="a"), "y", T0 + S) == []
    assert reg.advance(T0 + 1000 * S) == []


def _fleet(n: int) -> Registry:
    reg = Registry(threshold=0.5, min_critical=3)
    for i in range(n):
        register(reg, f"i{i}")
    return reg


@pytest.mark.parametrize("size", [1, 2, 3])
def test_protection_never_trips_on_a_small_registry_losing_one(size):
    reg = _fleet(size)
    for t in range(1, 200):
        for i in range(1, size):
            beat(reg, f"i{i}", t)
        out = reg.advance(T0 + t * S)
        assert "registry.protection.entered" not in types(out)
    assert "i0" not in reg.instances  # it really expired
    assert not reg.protection


def test_protection_enters_on_mass_misses_and_leaves_when_heartbeats_resume():
    reg = _fleet(10)
    for t in range(1, 10):
        for i in range(4, 10):
            beat(reg, f"i{i}", t)
    # i0..i3 miss at 10 s (4 of 10: not more than half); everyone else at 19 s.
    out = reg.advance(T0 + 18 * S)
    assert len(reg.missed) == 4 and not reg.protection
    out = reg.advance(T0 + 19 * S)
    entered = [d for d in out if d.event.TYPE == "registry.protection.entered"]
    assert len(entered) == 1 and reg.protection
    assert entered[0].time_us == T0 + 19 * S
    assert entered[0].event.total == 10 and entered[0].event.critical == 6
    # Nobody is removed while it is on, however long.
    out = reg.advance(T0 + 500 * S)
    assert "registry.instance.expired" not in types(out)
    assert len(reg.instances) == 10 and all(e.status == "critical" for e in reg.instances.values())
    # Heartbeats resume for 4 of them: 6 missing of 10 is still more than half...
    for i in range(4, 8):
        beat(reg, f"i{i}", 501)
    assert reg.protection
    # ...the fifth brings it to 5 of 10: protection exits and the parked expiries resume.
    out = beat(reg, "i8", 501)
    assert types(out)[-1] == "registry.protection.exited" and not reg.protection
    # The ones still silent get one more TTL (10 s) to come back, then go.
    for i in range(4, 9):
        beat(reg, f"i{i}", 509)
    assert "registry.instance.expired" not in types(reg.advance(T0 + 511 * S - 1))
    out = reg.advance(T0 + 511 * S)
    assert types(out).count("registry.instance.expired") == 5
    assert {d.time_us for d in out} == {T0 + 511 * S}
    assert sorted(reg.instances) == ["i4", "i5", "i6", "i7", "i8"]


def test_slow_trickle_of_deaths_does_not_trip_protection():
    reg = _fleet(6)
    alive = {f"i{i}" for i in range(6)}
    for t in range(1, 400):
        if t % 40 == 0 and len(alive) > 1:
            alive.discard(sorted(alive)[0])  # one dies every 40 s (each TTL window sees one)
        for iid in alive:
            beat(reg, iid, t)
        assert "registry.protection.entered" not in types(reg.advance(T0 + t * S))
    assert set(reg.instances) == alive


# -- picks -----------------------------------------------------------------------------------


def _balanced(*specs: tuple[str, dict]) -> Balancer:
    reg = Registry()
    for iid, kw in specs:
        register(reg, iid, **kw)
    return Balancer(reg, random.Random(7))


def test_round_robin_rotates_exactly_over_passing_instances():
    bal = _balanced(("c", {}), ("a", {}), ("b", {}), ("d", {}))
    bal.registry.drain(Drain(service="web", instance_id="d"), "d", T0)
    beat(bal.registry, "b", 1, status="warning")
    picks = [bal.pick("web", "round_robin").instance_id for _ in range(6)]
    assert picks == ["a", "c", "a", "c", "a", "c"]


def test_warning_instances_only_when_no_passing_one():
    bal = _balanced(("a", {}), ("b", {}))
    beat(bal.registry, "a", 1, status="warning")
    assert {bal.pick("web").instance_id for _ in range(10)} == {"b"}
    beat(bal.registry, "b", 1, status="critical")
    assert {bal.pick("web").instance_id for _ in range(10)} == {"a"}


def test_no_instance_to_pick_is_a_clear_unavailable():
    bal = _balanced(("a", {}))
    beat(bal.registry, "a", 1, status="critical")
    with pytest.raises(Unavailable, match=r"no passing or warning instance of service 'web'"):
        bal.pick("web")
    with pytest.raises(Unavailable, match="none registered"):
        bal.pick("nope")
    with pytest.raises(Unavailable, match="with tag 'x'"):
        bal.pick("web", tag="x")


def test_random_is_roughly_uniform():
    bal = _balanced(("a", {}), ("b", {}), ("c", {}))
    counts = Counter(bal.pick("web", "random").instance_id for _ in range(3000))
    assert set(counts) == {"a", "b", "c"}
    assert all(800 < n < 1200 for n in counts.values())


def test_weighted_follows_weights():
    bal = _balanced(("a", {"weight": 1}), ("b", {"weight": 3}))
    counts = Counter(bal.pick("web", "weighted").instance_id for _ in range(4000))
    assert 2700 < counts["b"] < 3300 and counts["a"] + counts["b"] == 4000


def test_least_loaded_by_load_then_by_placed_resources():
    bal = _balanced(("a", {}), ("b", {}), ("c", {}))
    beat(bal.registry, "a", 1, load=0.9)
    beat(bal.registry, "b", 1, load=0.2)
    beat(bal.registry, "c", 1, load=0.2)
    assert bal.pick("web", "least_loaded").instance_id == "b"  # tie on load: by id
    bal.registry.place("r1", "b", 1, deleted=False)
    assert bal.pick("web", "least_loaded").instance_id == "c"
    bal.registry.place("r1", "b", 2, deleted=True)
    bal.registry.place("r1", "c", 1, deleted=False)  # stale: version 1 < 2
    assert bal.pick("web", "least_loaded").instance_id == "b"


def test_tag_filter_and_separate_rotation():
    bal = _balanced(("a", {"tags": ["eu"]}), ("b", {"tags": ["us"]}), ("c", {"tags": ["eu"]}))
    assert [bal.pick("web", tag="eu").instance_id for _ in range(3)] == ["a", "c", "a"]
    assert bal.pick("web", tag="us").instance_id == "b"


def test_entry_memory_is_under_a_kilobyte():
    import tracemalloc

    reg = Registry()
    events = [
        Register(
            service=f"svc-{i % 50}",
            instance_id=f"svc-{i % 50}-instance-{i:06d}",
            address=f"10.0.{i // 250 % 250}.{i % 250}",
            port=8080,
            tags=["http", "eu-west"],
            meta={"version": "1.2.3"},
        )
        for i in range(2000)
    ]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i, event in enumerate(events):
        reg.register(event, f"e{i}", T0)
    reg.pending.clear()
    reg.dirty.clear()
    per_instance = (tracemalloc.get_traced_memory()[0] - before) / len(events)
    tracemalloc.stop()
    print(f"\n{per_instance:.0f} bytes per instance")
    assert per_instance < 1024


def test_a_registration_may_start_with_a_reported_status():
    reg = Registry()
    assert transitions(register(reg, "a", status="critical")) == [
        ("a", None, "critical", "registered")
    ]
    assert transitions(beat(reg, "a", 1)) == [("a", "critical", "passing", "reported")]
    # registering again says again what it reports
    assert transitions(register(reg, "a", 2, status="warning")) == [
        ("a", "passing", "warning", "reregistered")
    ]
