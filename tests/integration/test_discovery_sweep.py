"""A mass expiry is swept in slices: the event loop runs between them, so a sweep of thousands
of instances holds no query, ack or heartbeat up for its whole length."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from bus import Bus, VirtualClock
from discovery_worker import SOURCE, DiscoveryConfig, bootstrap
from discovery_worker._time import to_us
from discovery_worker.worker import SWEEP_SLICE
from schemas import Register
from tests._wait import eventually

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
MANY = 4 * SWEEP_SLICE


async def test_thousands_missing_at_once_are_swept_with_the_loop_running_between_slices(
    memory_url, tmp_path, unique
):
    clock = VirtualClock(T0)
    bus = Bus(memory_url, source=SOURCE, clock=clock)
    config = DiscoveryConfig(queue=f"{unique}.discovery", service=f"{unique}.discovery")
    worker = await bootstrap(
        bus=bus, db_url=f"sqlite+aiosqlite:///{tmp_path}/d.db", config=config, clock=clock
    )
    await worker.start()
    try:
        for i in range(MANY):
            register = Register(
                service="web", instance_id=f"web-{i}", address="10.0.0.1", port=80, ttl_s=1
            )
            worker.registry.register(register, f"{unique}-{i}", to_us(T0))
        worker.tick()  # arms the expiry timer for T0 + 1 s
        await worker.publish()
        await eventually(lambda: clock.next_due() is not None, what="the expiry timer armed")

        # What the loop sees, turn by turn, while the sweep runs.
        seen: list[int] = []
        loop = asyncio.get_running_loop()

        def each_turn() -> None:
            seen.append(len(worker.registry.missed))
            if seen[-1] < MANY:
                loop.call_soon(each_turn)

        loop.call_soon(each_turn)
        await clock.advance(2)
        await eventually(lambda: len(worker.registry.missed) == MANY, what="every one missed")
        await eventually(lambda: seen[-1] == MANY, what="the last turn seen")
        partial = sorted({n for n in seen if 0 < n < MANY})
        assert partial, "the sweep held the loop from its first to its last instance"
        assert all(n % SWEEP_SLICE == 0 for n in partial)  # between slices, never inside one
    finally:
        await worker.stop()
        await bus.close()
