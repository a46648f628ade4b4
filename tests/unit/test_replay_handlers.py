"""Replaying logs into a user's own handlers with the `replay` fixture (govbus.testing)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bus.clock import VirtualClock
from bus.eventlog import LogEvent, read_log
from bus.message import EventMeta
from bus.replay import Replay, ReplayError
from schemas import Heartbeat, InstanceExpired, Register
from tests._wait import eventually

LOGS = Path(__file__).parent.parent / "logs"
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


async def test_handlers_see_every_event_in_order_at_its_time(replay):
    seen: list[tuple[str, str, datetime, datetime]] = []

    async def on_register(event: Register, meta: EventMeta) -> None:
        seen.append(("register", event.instance_id, meta.time, replay.clock.now()))

    async def on_heartbeat(event: Heartbeat, meta: EventMeta) -> None:
        seen.append(("heartbeat", event.instance_id, meta.time, replay.clock.now()))

    await replay.subscribe({Register.TYPE: on_register, Heartbeat.TYPE: on_heartbeat})
    count = await replay.run(LOGS / "registrations.jsonl")
    recorded = list(read_log(LOGS / "registrations.jsonl"))
    assert count == len(recorded) == len(seen)
    assert [(s[1], s[2]) for s in seen] == [(e.data["instance_id"], e.time) for e in recorded]
    assert all(at == now for _, _, at, now in seen)  # the clock stands at each event's time


async def test_timers_fire_in_due_order_between_events(replay):
    """A handler arms a timer per registration; timers due before the next event fire first,
    in due order (not the order they were armed), each finishing before the next."""
    bus = None
    fired: list[tuple[str, datetime]] = []

    async def expire_later(event: Register) -> None:
        await replay.clock.sleep_until(replay.clock.now() + timedelta(seconds=event.ttl_s))
        fired.append((event.instance_id, replay.clock.now()))
        assert bus is not None
        await bus.publish(
            InstanceExpired(service=event.service, instance_id=event.instance_id),
            event_id=f"expired-{event.instance_id}",
        )

    tasks: set[asyncio.Task[None]] = set()

    async def on_register(event: Register, meta: EventMeta) -> None:
        task = asyncio.get_running_loop().create_task(expire_later(event))
        tasks.add(task)

    bus = await replay.subscribe({Register.TYPE: on_register}, source="expirer")
    log = [
        register(0, "slow", ttl=10),
        register(1, "fast", ttl=2),
        register(2, "mid", ttl=5),
        register(20, "late", ttl=1),
    ]
    await replay.run(log)
    assert fired == [
        ("fast", T0 + timedelta(seconds=3)),
        ("mid", T0 + timedelta(seconds=7)),
        ("slow", T0 + timedelta(seconds=10)),
    ]
    assert [e.id for e in replay.produced] == ["expired-fast", "expired-mid", "expired-slow"]
    assert [e.time for e in replay.produced] == [t for _, t in fired]
    await replay.advance(1)
    assert fired[-1] == ("late", T0 + timedelta(seconds=21))
    for task in tasks:
        task.cancel()


async def test_events_published_by_workers_are_not_fed(replay):
    seen: list[str] = []

    async def on_any(event: object, meta: EventMeta) -> None:
        seen.append(meta.id)

    await replay.subscribe({InstanceExpired.TYPE: on_any})
    ours = LogEvent(
        "x1", InstanceExpired.TYPE, "govbus/discovery", T0, {"service": "a", "instance_id": "a-1"}
    )
    theirs = LogEvent(
        "x2", InstanceExpired.TYPE, "someone", T0, {"service": "a", "instance_id": "a-1"}
    )
    await replay.run([ours, theirs])
    assert seen == ["x2"]
    assert replay.engine.stats.skipped == 1


async def test_a_failing_handler_goes_through_the_consumer_policy(replay):
    attempts: list[str] = []

    async def flaky(event: Register, meta: EventMeta) -> None:
        attempts.append(meta.id)
        if len(attempts) < 2:
            raise RuntimeError("transient")

    await replay.subscribe({Register.TYPE: flaky})
    await replay.run([register(0, "a", ttl=1)])
    assert len(attempts) == 2  # failed once, retried by the policy, then handled


async def test_the_same_handlers_and_log_give_the_same_events_twice():
    async def run_once() -> list[tuple[str, str, datetime]]:
        async with Replay() as engine:

            async def on_register(event: Register, meta: EventMeta) -> None:
                await bus.publish(
                    InstanceExpired(service=event.service, instance_id=event.instance_id),
                    event_id=f"seen-{meta.id}",
                )

            bus = await engine.subscribe({Register.TYPE: on_register}, source="echo")
            for event in read_log(LOGS / "registrations.jsonl"):
                await engine.feed(event)
            return [(e.id, e.type, e.time) for e in engine.produced]

    first, second = await run_once(), await run_once()
    assert first == second and len(first) == 3


def register(at: float, name: str, *, ttl: float) -> LogEvent:
    data = {"service": "web", "instance_id": name, "address": "10.0.0.1", "port": 80, "ttl_s": ttl}
    return LogEvent(f"reg-{name}", Register.TYPE, "web", T0 + timedelta(seconds=at), data)


async def test_a_step_that_never_settles_is_an_error_saying_what_is_busy():
    async def spin() -> None:
        while True:
            await asyncio.sleep(0)  # never done: the bus can never be quiescent

    spinners: list[asyncio.Task[None]] = []

    async def on_register(event: Register, meta: EventMeta) -> None:
        spinners.append(asyncio.get_running_loop().create_task(spin()))

    async with Replay(settle_timeout_s=0.2) as engine:
        await engine.subscribe({Register.TYPE: on_register})
        with pytest.raises(ReplayError) as caught:
            await engine.feed(register(0, "a", ttl=1))
        for task in spinners:
            task.cancel()
    assert "did not settle within 0.2 s at 2026-01-01T12:00:00+00:00" in str(caught.value)
    assert "ready callbacks" in str(caught.value)


async def test_the_clock_jumps_only_when_no_timer_is_due_on_the_way():
    """Replay moves the clock without awaiting when nothing sleeps until then; a timer due on
    the way must be fired (advance_to), never skipped."""
    clock = VirtualClock(T0)
    sleeper = asyncio.get_running_loop().create_task(clock.sleep_until(T0 + timedelta(seconds=5)))
    await eventually(lambda: clock.next_due() is not None, what="the sleeper's wake-up time")
    clock.jump_to(T0 + timedelta(seconds=4))
    assert clock.now() == T0 + timedelta(seconds=4)
    with pytest.raises(ValueError, match="a sleeper is due at 2026-01-01T12:00:05"):
        clock.jump_to(T0 + timedelta(seconds=6))
    assert clock.now() == T0 + timedelta(seconds=4) and not sleeper.done()
    await clock.advance_to(T0 + timedelta(seconds=6))
    await sleeper
