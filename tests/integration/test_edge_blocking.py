"""The edge's read path: answers from a cache that registry events keep fresh, per-service
indexes, and blocking reads (`?index=N&wait=…`), through real workers (embedded bus and
RabbitMQ)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from bus.client import Bus
from bus.settings import load_settings
from govbus.components import COMPONENTS, running_component
from http_edge import Limits, create_app
from http_edge._context import Edge
from http_edge.server import EdgeServer
from schemas.registry import Deregister, Heartbeat, Register
from tests._edge_stack import BOTH, SECRET, Stack, bearer, bus_url, edge_stack
from tests._proxy import TcpProxy
from tests._wait import eventually
from tests.e2e._up import free_port

pytestmark = pytest.mark.asyncio

# Long enough that only an event (never age) can have refreshed a cached answer.
NO_AGEING = Limits(cache_max_age_s=3600.0)


def instance(service: str, instance_id: str) -> dict[str, object]:
    return {"service": service, "instance_id": instance_id, "address": "10.0.0.9", "port": 80}


def state(stack: Stack) -> Edge:
    edge: Edge = stack.app.extensions["govbus"]
    return edge


async def register(stack: Stack, service: str, instance_id: str) -> None:
    r = await stack.client.post(
        "/v1/instances", json=instance(service, instance_id), headers=stack.headers
    )
    assert r.status_code == 202, await r.get_data()

    async def listed() -> bool:
        r = await stack.client.get(f"/v1/services/{service}", headers=stack.headers)
        ids = [i["instance_id"] for i in (await r.get_json()).get("instances", [])]
        return r.status_code == 200 and instance_id in ids

    await eventually(listed, interval=0.01, what=f"{instance_id} to be listed")


async def read(stack: Stack, path: str) -> tuple[int, int, dict[str, object]]:
    r = await stack.client.get(path, headers=stack.headers)
    return r.status_code, int(r.headers["X-Govbus-Index"]), await r.get_json()


def watchers_on(stack: Stack, service: str) -> int:
    slot = state(stack).cache._slots.get(service)
    return slot.waiting if slot is not None else 0


@pytest.fixture(params=BOTH)
async def stack(request, tmp_path, unique):
    url = bus_url(request, unique)
    async with edge_stack(url, tmp_path, workers=("discovery",), limits=NO_AGEING) as s:
        yield s


async def test_a_blocking_read_answers_when_its_service_changes(stack):
    await register(stack, "web", "web-1")
    status, index, body = await read(stack, "/v1/services/web")
    assert status == 200 and body["index"] == index >= 1

    blocked = asyncio.ensure_future(read(stack, f"/v1/services/web?index={index}&wait=60s"))
    await eventually(lambda: watchers_on(stack, "web"), what="the read to block")
    assert not blocked.done()
    began = time.monotonic()
    await stack.bus.publish(
        Register(service="web", instance_id="web-2", address="10.0.0.2", port=1)
    )
    status, new_index, body = await asyncio.wait_for(blocked, 10)
    assert status == 200 and new_index > index and body["index"] == new_index
    assert {i["instance_id"] for i in body["instances"]} == {"web-1", "web-2"}
    assert time.monotonic() - began < 10  # woken by the change, not by its 60 s wait


async def test_a_change_to_another_service_does_not_wake_a_reader(stack):
    await register(stack, "web", "web-1")
    _, index, _ = await read(stack, "/v1/services/web")
    blocked = asyncio.ensure_future(read(stack, f"/v1/services/web?index={index}&wait=2s"))
    await eventually(lambda: watchers_on(stack, "web"), what="the read to block")
    await register(stack, "db", "db-1")  # a change elsewhere, seen by this edge
    _, db_index, _ = await read(stack, "/v1/services/db")
    assert db_index > index
    assert not blocked.done()
    # ... and heartbeats of its own service that change no status do not wake it either.
    await stack.bus.publish(Heartbeat(service="web", instance_id="web-1"))
    status, same, body = await asyncio.wait_for(blocked, 10)  # after its wait: unchanged
    assert status == 200 and same == index
    assert [i["instance_id"] for i in body["instances"]] == ["web-1"]


async def test_many_watchers_cost_one_fetch_per_change(stack):
    await register(stack, "web", "web-1")
    cache = state(stack).cache
    await eventually(lambda: cache.events >= 2, what="registered and status_changed to arrive")
    _, index, _ = await read(stack, "/v1/services/web")
    count = 300
    blocked = [
        asyncio.ensure_future(read(stack, f"/v1/services/web?index={index}&wait=60s"))
        for _ in range(count)
    ]
    await eventually(
        lambda: watchers_on(stack, "web") == count, timeout=30, what="every read to block"
    )
    metrics = await (await stack.client.get("/metrics")).get_data(as_text=True)
    assert f"govbus_edge_blocking_reads {float(count)}" in metrics
    fetches = cache.fetches
    await stack.bus.publish(Deregister(service="web", instance_id="web-1"))
    answers = await asyncio.wait_for(asyncio.gather(*blocked), 30)
    # The service is gone: each watcher hears it (a 404 carrying the service's new index).
    assert {(status, new > index) for status, new, _ in answers} == {(404, True)}
    assert cache.fetches - fetches <= 3  # one fill per change (and per event), not one per reader


async def test_a_cached_answer_follows_events_and_consistent_asks_the_worker(stack):
    await register(stack, "web", "web-1")
    cache = state(stack).cache
    await eventually(lambda: cache.events >= 2, what="registered and status_changed to arrive")
    _, _, before = await read(stack, "/v1/services/web")
    beat = before["instances"][0]["last_heartbeat"]

    # A heartbeat changes no status: no event, so the cached answer (which never ages here)
    # keeps the old time, while ?consistent=1 asks the worker.
    await stack.bus.publish(Heartbeat(service="web", instance_id="web-1", note="fresh"))

    async def worker_saw_it() -> bool:
        _, _, body = await read(stack, "/v1/services/web?consistent=1")
        return body["instances"][0]["note"] == "fresh"

    await eventually(worker_saw_it, interval=0.01, what="the worker to apply the heartbeat")
    _, _, cached = await read(stack, "/v1/services/web")
    assert cached["instances"][0]["last_heartbeat"] == beat
    assert cached["instances"][0]["note"] == ""

    # A registry event naming the service drops the cached answer: the next read is new.
    await stack.bus.publish(Deregister(service="web", instance_id="web-1"))

    async def gone() -> bool:
        status, _, _ = await read(stack, "/v1/services/web")
        return status == 404

    await eventually(gone, interval=0.01, what="the deregistration to show")
    status, index, body = await read(stack, "/v1/services/web")
    assert status == 404 and index >= 1 and body["status"] == 404


async def test_heartbeat_times_are_at_most_a_second_old(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path, workers=("discovery",)) as stack:
        await register(stack, "web", "web-1")
        await read(stack, "/v1/services/web")  # cached now
        await stack.bus.publish(Heartbeat(service="web", instance_id="web-1", note="later"))
        began = time.monotonic()

        async def shown() -> bool:
            _, _, body = await read(stack, "/v1/services/web")
            return body["instances"][0]["note"] == "later"

        await eventually(shown, interval=0.02, timeout=5, what="the heartbeat to show")
        assert time.monotonic() - began < 2.0  # 1 s of age, and the worker's own pace


async def test_a_moved_instance_leaves_its_old_service_at_once(stack):
    await register(stack, "web", "mover")
    await register(stack, "db", "db-1")
    await read(stack, "/v1/services/web")
    # Re-registered under another service: the event names only the new one.
    await stack.bus.publish(Register(service="db", instance_id="mover", address="10.0.0.3", port=2))

    async def moved() -> bool:
        status, _, _ = await read(stack, "/v1/services/web")
        return status == 404

    await eventually(moved, interval=0.01, what="web to lose the moved instance")


async def test_the_services_summary_blocks_too(stack):
    await register(stack, "web", "web-1")
    _, index, _ = await read(stack, "/v1/services")
    blocked = asyncio.ensure_future(read(stack, f"/v1/services?index={index}&wait=60s"))
    await eventually(lambda: watchers_on(stack, "*"), what="the summary read to block")
    await stack.bus.publish(Register(service="db", instance_id="db-1", address="10.0.0.2", port=1))
    status, new_index, body = await asyncio.wait_for(blocked, 10)
    assert status == 200 and new_index > index
    assert [s["service"] for s in body["services"]] == ["db", "web"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("wait=forever", "wait"),
        ("wait=10", None),
        ("index=-1", "index"),
        ("index=abc", "index"),
        ("consistent=maybe", "consistent"),
    ],
)
async def test_bad_blocking_parameters_are_named(tmp_path, unique, query, field):
    async with edge_stack(f"memory://{unique}", tmp_path, workers=("discovery",)) as stack:
        await register(stack, "web", "web-1")
        r = await stack.client.get(f"/v1/services/web?{query}", headers=stack.headers)
        if field is None:  # a bare number is seconds, as Consul reads it: fine without index
            assert r.status_code == 200
            return
        assert r.status_code == 422
        body = await r.get_json()
        assert [e["field"] for e in body["errors"]] == [f"query.{field}"]


@pytest.mark.rabbitmq
async def test_a_reconnection_empties_the_cache(vhost_url, tmp_path):
    """Events sent while the edge was cut off are lost with its private queue: after the
    connection comes back, no answer from before the cut may be served."""
    parts = urlsplit(vhost_url)
    async with contextlib.AsyncExitStack() as stack:
        stored = load_settings(db=f"sqlite+aiosqlite:///{tmp_path / 'discovery'}.db")
        await stack.enter_async_context(
            running_component(COMPONENTS["discovery"], vhost_url, stored)
        )
        proxy = await stack.enter_async_context(TcpProxy("127.0.0.1", parts.port or 5672))
        cut_url = urlunsplit(parts._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))
        edge_bus = Bus(cut_url + "?heartbeat=2", source="govbus/edge")
        await edge_bus.start()
        stack.push_async_callback(edge_bus.close)
        app = create_app(bus=edge_bus, settings=load_settings(auth_secret=SECRET), limits=NO_AGEING)
        test_app = await stack.enter_async_context(app.test_app())
        client, headers = test_app.test_client(), bearer()
        publisher = await stack.enter_async_context(Bus(vhost_url, source="test"))

        await publisher.publish(
            Register(service="web", instance_id="web-1", address="10.0.0.1", port=1)
        )

        async def listed() -> bool:
            r = await client.get("/v1/services/web", headers=headers)
            return r.status_code == 200

        await eventually(listed, what="web-1 to be listed")
        cache = app.extensions["govbus"].cache
        await proxy.cut()
        proxy.blackhole()
        # While the edge is away, the instance goes: its event never reaches the edge.
        await publisher.publish(Deregister(service="web", instance_id="web-1"))
        proxy.heal()
        await eventually(lambda: edge_bus.transport.reconnects >= 1, what="the edge to reconnect")
        await eventually(lambda: cache.live, what="the cache's tap to come back")
        r = await client.get("/v1/services/web", headers=headers)
        assert r.status_code == 404, await r.get_data()


async def test_a_shutdown_answers_blocked_reads_at_once(tmp_path, unique):
    """A graceful stop does not wait for blocked reads (uvicorn would give them 3 s, then
    cut them): each gets the answer as it stands."""
    url = f"memory://{unique}"
    stored = load_settings(db=f"sqlite+aiosqlite:///{tmp_path / 'discovery'}.db")
    async with running_component(COMPONENTS["discovery"], url, stored):
        edge_bus = Bus(url, source="govbus/edge")
        await edge_bus.start()
        port = free_port()
        settings = load_settings(auth="disabled", http=f"127.0.0.1:{port}")
        server = EdgeServer(create_app(bus=edge_bus, settings=settings), settings)
        await server.start()
        try:
            await edge_bus.publish(
                Register(service="web", instance_id="web-1", address="10.0.0.1", port=1)
            )
            base = f"http://127.0.0.1:{port}/v1/services/web"
            async with httpx.AsyncClient(timeout=30) as client:

                async def listed() -> httpx.Response | None:
                    with contextlib.suppress(httpx.TransportError):
                        r = await client.get(base)
                        return r if r.status_code == 200 else None
                    return None

                index = int((await eventually(listed)).headers["X-Govbus-Index"])
                blocked = asyncio.ensure_future(client.get(f"{base}?index={index}&wait=60s"))
                cache = server.app.extensions["govbus"].cache
                await eventually(lambda: cache.watchers == 1, what="the read to block")
                began = time.monotonic()
                await server.stop()
                r = await blocked
                assert time.monotonic() - began < 2.0  # not uvicorn's 3 s graceful limit
                assert r.status_code == 200 and int(r.headers["X-Govbus-Index"]) == index
        finally:
            await server.stop()
            await edge_bus.close()
