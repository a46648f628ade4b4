"""Per-service indexes: a service's index moves exactly when the worker derives an event
naming it (or protection turns), so an edge that follows events knows every index change."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from discovery_worker._time import to_us
from discovery_worker.registry import Registry
from schemas import Deregister, Drain, Heartbeat, Register

T0 = to_us(datetime(2026, 1, 1, tzinfo=UTC))
S = 1_000_000
SERVICES = ("web", "db", "cache")


def named(derived: list) -> set[str]:
    """The services the derived events name; `*` for protection (it shows in every answer)."""
    names = set()
    for d in derived:
        event = d.event
        if event.TYPE.startswith("registry.protection."):
            names.add("*")
        elif event.TYPE == "registry.instance.registered":
            names.add(event.instance.service)
        elif hasattr(event, "service"):
            names.add(event.service)
    return names


def test_an_index_moves_exactly_when_an_event_names_its_service():
    rng = random.Random(12)
    reg = Registry(min_critical=2)
    at = T0
    where: dict[str, str] = {}
    for step in range(3000):
        at += rng.randrange(0, 3 * S)
        before = {s: reg.indexes.of(s) for s in SERVICES}
        iid = f"i{rng.randrange(12)}"
        service = rng.choice(SERVICES)
        roll = rng.random()
        if roll < 0.25:
            derived = reg.register(
                Register(
                    service=service,
                    instance_id=iid,
                    address="10.0.0.1",
                    port=rng.choice((80, 81)),
                    ttl_s=10,
                    deregister_after_s=20,
                ),
                f"e{step}",
                at,
            )
            moved_from = where.get(iid) if where.get(iid) != service else None
            where[iid] = service
        elif roll < 0.75 and iid in where:
            status = rng.choice(("passing", "passing", "warning", "critical"))
            derived = reg.heartbeat(
                Heartbeat(service=where[iid], instance_id=iid, status=status, note=str(step)),
                f"e{step}",
                at,
            )
            moved_from = None
        elif roll < 0.8 and iid in where:
            derived = reg.drain(Drain(service=where[iid], instance_id=iid), f"e{step}", at)
            moved_from = None
        elif roll < 0.85 and iid in where:
            derived = reg.deregister(Deregister(service=where.pop(iid), instance_id=iid), "x", at)
            moved_from = None
        else:
            derived = reg.advance(at)
            moved_from = None
        for gone in set(where) - set(reg.instances):
            del where[gone]  # expired
        after = {s: reg.indexes.of(s) for s in SERVICES}
        names = named(derived) | ({moved_from} if moved_from else set())
        for s in SERVICES:
            moved = after[s] != before[s]
            assert moved == (s in names or "*" in names), (step, s, roll, derived)
            assert after[s] >= before[s]


def test_heartbeat_times_alone_do_not_move_an_index_and_restore_only_raises_them():
    reg = Registry()
    reg.register(Register(service="web", instance_id="a", address="h", port=1), "r", T0)
    index = reg.indexes.of("web")
    reg.heartbeat(Heartbeat(service="web", instance_id="a", note="n", load=0.5), "h", T0 + S)
    assert reg.indexes.of("web") == index < reg.index  # the registry's own index moved
    assert reg.indexes.of("nothing-yet") == 0
    again = Registry()
    again.load([], index=reg.index, protection=False, protection_exited_us=0, placements={})
    assert again.indexes.of("web") == again.indexes.of("nothing-yet") == reg.index >= index
