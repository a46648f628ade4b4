"""A million instances on one discovery worker, and heartbeats in batches.

`registry.instances_1000000.*`: a store (SQLite, then PostgreSQL) is filled with `n` instance
rows, then a fresh worker process restores them (`python -m benchmarks.scale load DB_URL`, so
its memory is its own): `load_s` is `worker.start()` (tables checked, every row read back, the
registry and its timers rebuilt), `rss_bytes` the process's resident memory after it, and
`bytes_per_instance` what the registry added per instance. With the instances loaded, the
child then measures the event loop's longest stall while 1% of the instances miss their
heartbeat at once and the expiry sweep handles them (`sweep_stall_ms`).

`registry.batched_heartbeats_per_s`: a worker on RabbitMQ with `instances` instances; agents
publish `registry.heartbeats` messages of 1,000 beats each (confirmed); the figure is
instance-heartbeats published, confirmed and applied per second, end to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from benchmarks._common import unique
from benchmarks.events import pipelined
from bus import Bus, VirtualClock
from bus.topology import declare_worker_queue, worker_queue
from schemas import Heartbeat, Heartbeats

TTL_S = 3600.0
BATCH = 1000
T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _rows(start: int, stop: int, at_us: int) -> list[dict[str, Any]]:
    """Instance rows as the journal writes them (100 services, a tag, no metadata); instance
    `i` heartbeats at `at_us`, except every hundredth one, a TTL earlier (it will miss)."""
    rows = []
    for i in range(start, stop):
        late = i % 100 == 0
        rows.append(
            {
                "instance_id": f"inst-{i:07d}",
                "service": f"svc-{i % 100}",
                "address": f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
                "port": 8000 + i % 1000,
                "tags": ["bench"],
                "meta": {},
                "weight": 1,
                "ttl_s": TTL_S,
                "deregister_after_s": TTL_S,
                "registered_at_us": at_us,
                "last_heartbeat_us": at_us - (int(TTL_S * 1e6) - 1_000_000 if late else 0),
                "status": "passing",
                "reported": "passing",
                "draining": False,
                "missed": False,
                "missed_at_us": 0,
                "load": None,
                "note": "",
            }
        )
    return rows


async def seed(db_url: str, n: int) -> None:
    """Fill a store with `n` instances, in the worker's own tables."""
    from sqlalchemy import insert

    from discovery_worker import DiscoveryConfig, bootstrap
    from discovery_worker._time import to_us
    from discovery_worker.journal import InstanceRow

    async with Bus("memory://scale-seed", source="bench-seed") as bus:
        worker = await bootstrap(bus=bus, db_url=db_url, config=DiscoveryConfig())
        await worker.journal.create_tables()
        at = to_us(T0)
        for start in range(0, n, 20_000):
            async with worker.store.unit_of_work() as session:
                await session.execute(insert(InstanceRow), _rows(start, min(n, start + 20_000), at))
        await worker.store.close()


async def load(db_url: str) -> dict[str, float]:
    """In a fresh process: restore the registry; then the loop's longest stall while the
    expiry sweep marks the late 1% critical."""
    from discovery_worker import DiscoveryConfig, bootstrap
    from discovery_worker._time import to_us

    base = _rss()
    clock = VirtualClock(T0)
    async with Bus("memory://scale-load", source="bench-load", clock=clock) as bus:
        # Protection would park the sweep: 1% is far below its threshold anyway.
        worker = await bootstrap(bus=bus, db_url=db_url, config=DiscoveryConfig(), clock=clock)
        began = time.perf_counter()
        await worker.start()
        load_s = time.perf_counter() - began
        rss = _rss()
        instances = len(worker.registry.instances)

        stalls: list[float] = []
        running = True

        async def ticker() -> None:
            while running:
                before = time.perf_counter()
                await asyncio.sleep(0.001)
                stalls.append(time.perf_counter() - before - 0.001)

        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        began = time.perf_counter()
        await clock.advance(2)  # the late 1% miss their heartbeat now
        now = to_us(clock.now())
        # the sweep runs in slices: done when nothing is due, and all it derived is out
        while worker.registry.due_by(now) or worker.registry.pending or worker.journal.committed:
            await asyncio.sleep(0.01)
        sweep_s = time.perf_counter() - began
        missed = len(worker.registry.missed)
        await asyncio.sleep(2.0)  # and a while of steady state after it: the window watched
        running = False
        await task
        await worker.stop()
    return {
        "load_s": load_s,
        "rss_bytes": rss,
        "bytes_per_instance": (rss - base) / max(instances, 1),
        "instances": instances,
        "missed": missed,
        "sweep_s": sweep_s,
        "sweep_stall_ms": max(stalls) * 1000,
    }


def load_in_child(db_url: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.scale", "load", db_url],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout
    figures: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return figures


@contextlib.asynccontextmanager
async def pg_database(pg_url: str) -> AsyncIterator[str]:
    """A database of its own on the server of `pg_url` (dropped afterwards)."""
    import asyncpg  # type: ignore[import-untyped]

    name = unique("govbus_bench_").replace(".", "_")
    admin = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield pg_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def million(n: int, pg_url: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """`registry.instances_<n>`: on SQLite, and on PostgreSQL (a database of its own on the
    server of `pg_url`) when `pg_url` is given."""
    figures: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="govbus-bench-"))
        stores = {"sqlite": f"sqlite+aiosqlite:///{tmp}/discovery.db"}
        if pg_url:
            stores["postgres"] = await stack.enter_async_context(pg_database(pg_url))
        for name, db_url in stores.items():
            began = time.perf_counter()
            await seed(db_url, n)
            log(
                f"  scale: {n:,} instances written to {name} in {time.perf_counter() - began:.1f} s"
            )
            figures[name] = load_in_child(db_url)
            log(f"  scale {name}: {figures[name]}")
    sqlite = figures["sqlite"]
    return {
        "load_s": max(f["load_s"] for f in figures.values()),
        "bytes_per_instance": sqlite["bytes_per_instance"],
        "rss_bytes": sqlite["rss_bytes"],
        "sweep_stall_ms": max(f["sweep_stall_ms"] for f in figures.values()),
        **{f"{name}_{key}": value for name, f in figures.items() for key, value in f.items()},
    }


async def batched_heartbeats_per_s(
    url: str, instances: int, batches: int, log: Callable[[str], None]
) -> dict[str, float]:
    """Instance-heartbeats per second through `registry.heartbeats`, end to end."""
    from discovery_worker import DiscoveryConfig, bootstrap
    from discovery_worker._time import to_us
    from discovery_worker.journal import InstanceRow

    name = unique("bench.discovery.")
    config = DiscoveryConfig(queue=name, service=name)
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/discovery.db"
        async with Bus(url, source="bench-discovery") as bus:
            seeder = await bootstrap(bus=bus, db_url=db_url, config=config)
            await seeder.journal.create_tables()
            from sqlalchemy import insert

            at = to_us(bus.clock.now())
            async with seeder.store.unit_of_work() as session:
                await session.execute(insert(InstanceRow), _rows(0, instances, at))
            await seeder.store.close()
            worker = await bootstrap(bus=bus, db_url=db_url, config=config)
            await worker.start()
            assert worker.consumer is not None
            stats = worker.consumer.stats
            async with Bus(url, source="bench-agents") as agents:
                await declare_worker_queue(agents.transport, worker_queue(name), [Heartbeats.TYPE])
                messages = [
                    Heartbeats(
                        beats=[
                            Heartbeat(
                                service=f"svc-{i % 100}",
                                instance_id=f"inst-{i:07d}",
                                load=0.5,
                            )
                            for i in ((b * BATCH + j) % instances for j in range(BATCH))
                        ]
                    )
                    for b in range(batches)
                ]
                start_count = stats.handled
                cpu_began, began = time.process_time(), time.perf_counter()

                async def publish(k: int) -> None:
                    await agents.publish(messages[k])

                await pipelined(batches, 16, publish)
                while stats.handled - start_count < batches:
                    await asyncio.sleep(0.002)
                elapsed = time.perf_counter() - began
                cpu = time.process_time() - cpu_began
            await worker.stop()
            await bus.transport.delete_queue(name)
            await bus.transport.delete_queue(f"{name}.dlq")
    beats = batches * BATCH
    log(f"  scale: {beats:,} heartbeats in {batches:,} messages in {elapsed:.2f} s")
    return {
        "batched_heartbeats_per_s": beats / elapsed,
        "batched_cpu_us_per_heartbeat": cpu / beats * 1e6,
    }


if __name__ == "__main__":
    if sys.argv[1:2] != ["load"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m benchmarks.scale load DB_URL")
    print(json.dumps(asyncio.run(load(sys.argv[2]))))
