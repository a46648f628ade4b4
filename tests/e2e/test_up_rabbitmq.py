"""`govbus up` on RabbitMQ: one process, two workers and the edge sharing `./govbus.db`.

Each derived event must be published once, by the worker that derived it: the manager's outbox
relay used to publish the discovery worker's unsent rows too (one SQLite file holds both).
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aio_pika
import httpx
import orjson
import pytest

from tests._wait import eventually
from tests.e2e._up import free_port, start_up, stop, wait_ready

pytestmark = pytest.mark.rabbitmq


async def test_govbus_up_on_rabbitmq_publishes_every_event_once(vhost_url, tmp_path):
    connection = await aio_pika.connect(vhost_url)
    try:
        channel = await connection.channel()
        events = await channel.declare_exchange(
            "govbus.events", aio_pika.ExchangeType.TOPIC, durable=True
        )
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(events, "#")
        port = free_port()
        proc = start_up(tmp_path, port, GOVBUS_URL=vhost_url, GOVBUS_AUTH="disabled")
        try:
            await asyncio.to_thread(wait_ready, proc, port)
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                await _exercise(http)
        finally:
            code, _out, err = await asyncio.to_thread(stop, proc)
        assert code == 0, err
        # The process has exited: everything it published is in the tap now.
        seen: list[aio_pika.abc.AbstractIncomingMessage] = []
        while (message := await tap.get(no_ack=True, fail=False)) is not None:
            seen.append(message)
    finally:
        await connection.close()
    twice = {i for i, n in Counter(m.message_id for m in seen).items() if n > 1}
    assert not twice, sorted((m.type, m.app_id) for m in seen if m.message_id in twice)
    # govbus up's health checker registers itself (service govbus-checker): not counted here.
    types = Counter(m.type for m in seen if not _about_the_checker(m.body))
    assert types["registry.instance.registered"] == 4, types
    assert types["registry.instance.expired"] == 2, types
    assert types["registry.instance.deregistered"] == 1, types
    assert types["resource.created"] == 1 and types["resource.status_changed"] >= 1, types


def _about_the_checker(body: bytes) -> bool:
    data = orjson.loads(body)
    service = data.get("service") or (data.get("instance") or {}).get("service")
    return bool(service == "govbus-checker")


async def _exercise(http: httpx.AsyncClient) -> None:
    """Registrations, a deregistration, two expiries and a VM placed on a host."""

    def instance(service: str, name: str, **extra: float) -> dict[str, object]:
        return {"service": service, "instance_id": name, "address": "10.0.0.5", "port": 22, **extra}

    registrations = [
        instance("host", "host-1"),
        instance("gone", "gone-1"),
        # listed for ttl + deregister_after (3 s from their registration): long enough to be
        # seen listed first, so that "gone" below means expired, not "not registered yet"
        instance("short", "short-1", ttl_s=1, deregister_after_s=2),
        instance("short", "short-2", ttl_s=1, deregister_after_s=2),
    ]
    for body in registrations:
        assert (await http.post("/v1/instances", json=body)).status_code == 202

    async def listed(service: str, instance_id: str) -> bool:
        r = await http.get(f"/v1/services/{service}")
        return r.status_code == 200 and any(
            i["instance_id"] == instance_id for i in r.json()["instances"]
        )

    await eventually(lambda: listed("host", "host-1"), timeout=20, what="host-1 to be registered")
    await eventually(
        lambda: listed("short", "short-2"), timeout=20, what="short-2 to be registered"
    )
    await eventually(lambda: listed("gone", "gone-1"), timeout=20, what="gone-1 to be registered")
    assert (await http.delete("/v1/instances/gone-1")).status_code == 202
    vm = {"kind": "vm", "name": "web-1", "vcpus": 1, "memory_mb": 512, "image": "debian-12"}
    created = await http.post("/v1/resources", json=vm)
    assert created.status_code == 201, created.text

    async def expired() -> bool:
        r = await http.get("/v1/services/short")
        return r.status_code == 404 or not r.json()["instances"]

    async def deregistered() -> bool:
        return not await listed("gone", "gone-1")

    await eventually(expired, timeout=20, what="short-1 and short-2 to expire")
    await eventually(deregistered, timeout=20, what="gone-1 to be deregistered")
