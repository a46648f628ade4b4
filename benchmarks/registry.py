"""Registry: heartbeats per second one discovery worker sustains, and memory per instance.

Heartbeats: a worker on RabbitMQ (SQLite store) is given `instances` registered instances and
then stopped; `heartbeats` heartbeat events are published into its now idle durable queue; a
fresh worker on the same database starts (loading the registry) and drains the backlog. The
figure is the drain rate, so it is the worker's own capacity, not the load generator's.

For scale, `broker_drain_per_s` is how fast raw aio-pika merely drains (acks, no work) the same
backlog from a quorum queue on the same broker: the ceiling any consumer of one queue has here.

Memory: `Registry.register` for `instances` instances in a fresh registry under tracemalloc,
with the derived events and the journal's dirty set cleared as a flush would leave them.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

from benchmarks._common import unique
from benchmarks.events import pipelined
from bus import Bus
from bus.topology import declare_worker_queue, worker_queue
from schemas import Heartbeat, Register

TTL_S = 3600.0  # nobody expires while the benchmark runs


def _register(i: int) -> Register:
    return Register(
        service=f"svc-{i % 100}",
        instance_id=f"inst-{i}",
        address=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}",
        port=8000 + i % 1000,
        tags=["bench"],
        ttl_s=TTL_S,
        deregister_after_s=TTL_S,
    )


def memory_per_instance(instances: int) -> float:
    """Bytes of registry state per instance (tracemalloc)."""
    from discovery_worker._time import to_us
    from discovery_worker.registry import Registry

    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        registry = Registry()
        at = to_us(datetime.now(UTC))
        for i in range(instances):
            # the event is garbage once handled, as in the worker: only what the entry keeps
            # of it is counted
            registry.register(_register(i), str(uuid.uuid4()), at)
        registry.pending.clear()
        registry.dirty.clear()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(registry.instances) == instances
    return (after - before) / instances


async def heartbeats_per_s(
    url: str, instances: int, heartbeats: int, log: Callable[[str], None]
) -> dict[str, float]:
    from discovery_worker import DiscoveryConfig, bootstrap
    from discovery_worker._time import to_us

    name = unique("bench.discovery.")
    config = DiscoveryConfig(queue=name, service=name)
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        db_url = f"sqlite+aiosqlite:///{tmp}/discovery.db"
        # 1. a worker learns the instances (directly: the benchmark is about heartbeats) and
        #    writes them to its store; then it stops, leaving its queue without a consumer.
        async with Bus(url, source="bench-seed") as bus:
            worker = await bootstrap(bus=bus, db_url=db_url, config=config)
            await worker.start()
            began = time.perf_counter()
            at = to_us(bus.clock.now())
            for i in range(instances):
                worker.registry.register(_register(i), str(uuid.uuid4()), at)
            worker.registry.pending.clear()  # no announcements: not what is measured
            await worker.journal.flush()
            log(
                f"  registry: seeded {instances:,} instances in {time.perf_counter() - began:.1f} s"
            )
            await worker.stop()

        # 2. the backlog: heartbeats into the idle queue.
        async with Bus(url, source="bench-agents") as agents:
            await declare_worker_queue(agents.transport, worker_queue(name), [Heartbeat.TYPE])

            async def beat(n: int) -> None:
                i = (n * 7919) % instances
                await agents.publish(
                    Heartbeat(service=f"svc-{i % 100}", instance_id=f"inst-{i}", load=0.5)
                )

            began = time.perf_counter()
            await pipelined(heartbeats, 256, beat)
            took = time.perf_counter() - began
            log(f"  registry: queued {heartbeats:,} heartbeats in {took:.1f} s")

        # 3. a fresh worker loads the registry and drains the backlog.
        async with Bus(url, source="bench-discovery") as bus:
            worker = await bootstrap(bus=bus, db_url=db_url, config=config)
            began = time.perf_counter()
            await worker.start()
            loaded = time.perf_counter() - began
            assert worker.consumer is not None
            stats = worker.consumer.stats
            start_count, began = stats.handled, time.perf_counter()
            cpu_began = time.process_time()
            while stats.handled < heartbeats:
                await asyncio.sleep(0.005)
            elapsed = time.perf_counter() - began
            cpu = time.process_time() - cpu_began
            drained = stats.handled - start_count
            assert len(worker.registry.instances) == instances
            await worker.stop()
            await bus.transport.delete_queue(name)
            await bus.transport.delete_queue(f"{name}.dlq")
    return {
        "heartbeats_per_s": drained / elapsed,
        "cpu_us_per_heartbeat": cpu / max(drained, 1) * 1e6,
        "load_s": loaded,
    }


async def broker_drain_per_s(url: str, messages: int) -> float:
    """Raw aio-pika acking a backlog of heartbeat-sized persistent messages off a quorum queue."""
    import aio_pika

    name = unique("bench.drain.")
    async with Bus(url, source="bench-agents") as agents:
        await declare_worker_queue(
            agents.transport, worker_queue(name), [Heartbeat.TYPE + "." + name]
        )

        async def beat(n: int) -> None:
            await agents.publisher.publish_raw(
                Heartbeat.TYPE + "." + name,
                Heartbeat(service="svc", instance_id=f"inst-{n}", load=0.5)
                .model_dump_json()
                .encode(),
            )

        await pipelined(messages, 256, beat)
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=256)
        queue = await channel.get_queue(name)
        done = asyncio.Event()
        count = 0

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            nonlocal count
            await message.ack()
            count += 1
            if count >= messages:
                done.set()

        began = time.perf_counter()
        tag = await queue.consume(on_message)
        await asyncio.wait_for(done.wait(), 300)
        elapsed = time.perf_counter() - began
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        await channel.queue_delete(f"{name}.dlq")
    finally:
        await connection.close()
    return messages / elapsed
