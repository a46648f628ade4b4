"""The manager-worker harness the integration tests share: a manager worker on its own bus, a
client bus that calls it and records its events, and a fake `discovery.pick` (or none, for tests
that run the real discovery worker)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from bus import Bus, EventMeta, Method, VirtualClock
from bus.errors import NotFound
from bus.store import OutboxRow
from manager_worker import SOURCE, ManagerConfig, ManagerWorker, bootstrap
from schemas import (
    EVENT_TYPES,
    Instance,
    InstanceStatusChanged,
    InstanceView,
    PickRequest,
)
from tests._wait import eventually

AMQP_URL = os.environ.get("GOVBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
MANAGER_TYPES = [
    "resource.created",
    "resource.updated",
    "resource.status_changed",
    "resource.deleted",
    "resource.drift",
]
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


_HOSTS = {"prefix": ""}


def hid(name: str) -> str:
    """A host id unique to the running test: on the shared broker, other runs of these very
    tests publish registry events for their hosts at the same time."""
    return f"{_HOSTS['prefix']}{name}"


def host(instance_id: str, *, load: float | None = None, status: str = "passing") -> Instance:
    return Instance(
        service="host",
        instance_id=instance_id,
        address="10.0.0.1",
        port=22,
        status=status,  # type: ignore[arg-type]
        registered_at=T0,
        load=load,
    )


@dataclass
class Harness:
    """A manager worker on its own bus, and a client bus that calls it and records its events."""

    client: Bus
    worker_bus: Bus
    worker: ManagerWorker
    clock: VirtualClock
    queues: list[str]
    namespace: str
    hosts: list[Instance] = field(default_factory=list)
    seen: list[tuple[EventMeta, Any]] = field(default_factory=list)

    def method(self, name: str) -> str:
        """`manager.create` under this test's RPC namespace (unique on a shared broker)."""
        return self.namespace + name.removeprefix("manager")

    async def call(self, method: str, **params: Any) -> Any:
        return await self.client.call(self.method(method), params, timeout=5.0)

    async def create(self, **spec: Any) -> dict[str, Any]:
        return await self.call("manager.create", spec=spec)

    async def vm(self, name: str, **extra: Any) -> dict[str, Any]:
        return await self.create(
            kind="vm", name=name, vcpus=2, memory_mb=2048, image="debian-12", **extra
        )

    async def resource(self, name: str) -> dict[str, Any]:
        return await self.call("manager.resource", name=name)

    def events(self, *types: str) -> list[tuple[EventMeta, Any]]:
        return [(m, e) for m, e in self.seen if not types or m.type in types]

    async def wait_events(self, count: int, *types: str) -> list[tuple[EventMeta, Any]]:
        await eventually(lambda: len(self.events(*types)) >= count, what=f"{count} {types}")
        return self.events(*types)

    async def feed(self, event: Any, *, event_id: str, at: datetime) -> None:
        """Publish `event` as the discovery worker (or a host agent) would, and wait until the
        manager has handled it."""
        stats = self.worker.consumer.stats  # type: ignore[union-attr]
        before, dead = stats.handled + stats.dead_lettered, stats.dead_lettered
        await self.client.publish(event, event_id=event_id, time=at)
        await eventually(
            lambda: stats.handled + stats.dead_lettered > before, what=f"{event.TYPE} handled"
        )
        assert stats.dead_lettered == dead

    async def count(self, table: Any) -> int:
        async with self.worker.store.unit_of_work() as session:
            return int(await session.scalar(select(func.count()).select_from(table)) or 0)

    async def settled(self) -> None:
        """Every committed outbox row has been relayed."""

        async def unsent() -> int:
            async with self.worker.store.unit_of_work() as session:
                return int(
                    await session.scalar(
                        select(func.count()).select_from(OutboxRow).where(OutboxRow.sent == 0)
                    )
                    or 0
                )

        async def relayed() -> bool:
            if await unsent():
                self.worker.relay.notify()  # no waiting for the relay's poll interval
                return False
            return True

        await eventually(relayed, what="outbox relayed")


def discovery_namespace(url: str, unique: str) -> str:
    return f"{unique}-d" if url.startswith("amqp") else "discovery"


@asynccontextmanager
async def harness(
    url: str,
    db_url: str,
    unique: str,
    *,
    discovery: bool = True,
    clock: VirtualClock | None = None,
    **config: Any,
) -> AsyncIterator[Harness]:
    """`discovery=True` serves a fake `discovery.pick`; False leaves it to a real worker (or
    to nobody) under the namespace `discovery_namespace(url, unique)`."""
    clock = clock or VirtualClock(T0)
    _HOSTS["prefix"] = f"{unique}-"
    client = Bus(url, source="test", rpc_timeout=5.0)
    await client.start()
    queues = [f"{unique}.seen", f"{unique}.seen.dlq", f"{unique}.manager", f"{unique}.manager.dlq"]
    worker_bus = Bus(url, source=SOURCE)
    # On the shared RabbitMQ other suites serve `manager.*` and `discovery.*`: use our own.
    shared = url.startswith("amqp")
    namespace = f"{unique}-m" if shared else "manager"
    disc = discovery_namespace(url, unique)
    h: Harness | None = None
    try:
        seen: list[tuple[EventMeta, Any]] = []
        stores: list[Any] = []  # the worker's, once built

        async def record(event: Any, meta: EventMeta) -> None:
            # The shared broker carries other managers' events too: keep this worker's only.
            if not stores:
                return
            async with stores[0].unit_of_work() as session:
                ours = await session.scalar(
                    select(func.count()).select_from(OutboxRow).where(OutboxRow.event_id == meta.id)
                )
            if ours:
                seen.append((meta, event))

        await client.subscribe(
            f"{unique}.seen",
            MANAGER_TYPES,
            dict.fromkeys(MANAGER_TYPES, record),
            {t: EVENT_TYPES[t] for t in MANAGER_TYPES},
        )
        hosts: list[Instance] = []
        if discovery:

            async def pick(request: PickRequest) -> InstanceView:
                assert (request.service, request.strategy) == ("host", "least_loaded")
                healthy = [i for i in hosts if i.status in ("passing", "warning")]
                if not healthy:
                    raise NotFound("no passing instance of service 'host'")
                best = min(healthy, key=lambda i: (i.load or 0.0, i.instance_id))
                return InstanceView(index=len(hosts), protection=False, instance=best)

            await client.serve(disc, {f"{disc}.pick": Method(PickRequest, pick)})
        await worker_bus.start()
        worker = await bootstrap(
            bus=worker_bus,
            db_url=db_url,
            clock=clock,
            config=ManagerConfig(
                queue=f"{unique}.manager",
                service=namespace,
                discovery=disc,
                pick_timeout_s=1.0,
                relay_poll_s=0.1,
                **config,
            ),
        )
        stores.append(worker.store)
        await worker.start()
        assert worker.ready
        h = Harness(client, worker_bus, worker, clock, queues, namespace, hosts, seen)
        yield h
    finally:
        if h is not None:
            await h.worker.stop()
        await client.close()
        for queue in queues:
            await worker_bus.transport.delete_queue(queue)
        await worker_bus.close()


def status_changed(instance_id: str, previous: str, status: str, reason: str, service="host"):
    return InstanceStatusChanged(
        service=service,
        instance_id=instance_id,
        previous=previous,  # type: ignore[arg-type]
        status=status,  # type: ignore[arg-type]
        reason=reason,
    )
