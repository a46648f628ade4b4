"""The discovery-worker harness the integration tests share: a client bus, the worker under
test (started and stopped at will), and every registry event it published."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from bus import Bus
from bus.errors import NotFound
from bus.message import EventMeta
from bus.topology import EVENTS
from bus.transport.base import QueueSpec
from discovery_worker import SOURCE, DiscoveryConfig, DiscoveryWorker, bootstrap
from schemas import Register
from tests._wait import eventually


class Harness:
    """A client bus, the worker(s) under test, and every registry event they published."""

    def __init__(self, url: str, unique: str, db_url: str, clock: Any = None) -> None:
        self.url, self.unique, self.db_url, self.clock = url, unique, db_url, clock
        self.config = DiscoveryConfig(queue=f"{unique}.discovery", service=f"{unique}.discovery")
        self.client = Bus(url, source="test", clock=clock)
        self.events: list[tuple[EventMeta, Any]] = []
        self.worker: DiscoveryWorker | None = None
        self.capture: Any = None
        self._worker_bus: Bus | None = None

    async def start_worker(self) -> DiscoveryWorker:
        self._worker_bus = Bus(self.url, source=SOURCE, clock=self.clock)
        await self._worker_bus.start()
        self.worker = await bootstrap(
            bus=self._worker_bus, db_url=self.db_url, config=self.config, clock=self.clock
        )
        await self.worker.start()
        await eventually(lambda: self.worker is not None and self.worker.ready, what="ready")
        return self.worker

    async def stop_worker(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
            self.worker = None
        if self._worker_bus is not None:
            await self._worker_bus.close()
            self._worker_bus = None

    async def call(self, method: str, **params: Any) -> Any:
        return await self.client.call(f"{self.unique}.discovery.{method}", params)

    async def publish(self, event: Any, **kw: Any) -> str:
        return await self.client.publish(event, **kw)

    def of(self, *types: str) -> list[Any]:
        return [e for m, e in self.events if m.type in types]

    def transitions(self) -> list[tuple[str, str | None, str, str]]:
        return [
            (e.instance_id, e.previous, e.status, e.reason)
            for e in self.of("registry.instance.status_changed")
        ]


@asynccontextmanager
async def harness(
    url: str, unique: str, db_url: str, *, clock: Any = None
) -> AsyncIterator[Harness]:
    h = Harness(url, unique, db_url, clock)
    await h.client.start()
    capture = f"{unique}.capture"
    transport = h.client.transport
    await transport.declare_queue(QueueSpec(capture, durable=False, exclusive=True))
    for pattern in ("registry.instance.*", "registry.protection.*", "registry.heartbeat.unknown"):
        await transport.bind(capture, EVENTS, pattern)

    async def record(event: Any, meta: EventMeta) -> None:
        # The shared broker carries other tests' events too (protection is checked on memory).
        if unique in str(event) or meta.type.startswith("registry.protection."):
            h.events.append((meta, event))

    from bus.consumer import EventConsumer
    from schemas import EVENT_TYPES

    consumer = EventConsumer(transport, capture, dict.fromkeys(EVENT_TYPES, record), EVENT_TYPES)
    await consumer.start()
    h.capture = consumer
    try:
        await h.start_worker()
        yield h
    finally:
        await h.stop_worker()
        await consumer.stop()
        for queue in (capture, h.config.queue, f"{h.config.queue}.dlq"):
            await transport.delete_queue(queue)
        await h.client.close()


async def instances(h: Harness, **params: Any) -> dict[str, dict[str, Any]]:
    """The test's service as the worker answers it, by instance id without the unique prefix
    (nothing registered yet: empty)."""
    try:
        view = await h.call("service", name=h.unique, **params)
    except NotFound:
        return {}
    return {i["instance_id"].removeprefix(h.unique + "-"): i for i in view["instances"]}


def reg(unique: str, iid: str, **kw: Any) -> Register:
    return Register(
        service=kw.pop("service", unique),
        instance_id=f"{unique}-{iid}",
        address="10.0.0.1",
        port=kw.pop("port", 8080),
        **kw,
    )


async def dead_letters(h: Harness, count: int) -> dict[str, str]:
    """This test's dead letters in the worker's DLQ, once there are `count`: the part of each
    message id after `<unique>-` -> its `x-govbus-error` (the shared broker may dead-letter
    other tests' messages there too: only ids starting with this test's `unique` count)."""
    reasons: dict[str, str] = {}

    def take(delivery: Any) -> None:
        message_id = str(delivery.message.message_id or "")
        if message_id.startswith(h.unique):
            reasons[message_id.removeprefix(h.unique + "-")] = str(
                delivery.message.headers["x-govbus-error"]
            )

    sub = await h.client.transport.consume(f"{h.config.queue}.dlq", take, prefetch=100)
    try:
        await eventually(
            lambda: len(reasons) == count,
            timeout=10,
            what=lambda: f"{count} dead letters: {reasons}",
        )
    finally:
        await sub.close()
    return reasons
