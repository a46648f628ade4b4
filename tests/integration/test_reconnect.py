"""Connection life on real RabbitMQ: the bus heals itself after a cut, a partition or a restart.

aio-pika's robust connection has open bugs exactly here (consumers not restored, RPC futures
left hanging), so these tests assert the end state that matters: the consumer is registered
again on the broker, and messages and calls flow again.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bus import Bus, ConnectionLost, Method
from bus.consumer import ConsumerPolicy
from bus.errors import TopologyError
from bus.message import EventMeta, Message
from bus.transport import QueueSpec
from schemas import EVENT_TYPES, Heartbeat
from tests._proxy import TcpProxy
from tests._wait import eventually

pytestmark = pytest.mark.rabbitmq


class Ping(Heartbeat):
    pass


async def start_worker(url: str, queue: str, seen: list[str]) -> Bus:
    """A bus with an event consumer on `queue` and an RPC method `<queue>.echo`."""
    bus = Bus(url, source="reconnect-test")
    await bus.start()

    async def on_heartbeat(event: Heartbeat, meta: EventMeta) -> None:
        seen.append(event.note)

    async def echo(req: Heartbeat) -> dict[str, str]:
        return {"note": req.note}

    await bus.subscribe(
        queue,
        ["registry.heartbeat"],
        {"registry.heartbeat": on_heartbeat},
        EVENT_TYPES,
        policy=ConsumerPolicy(prefetch=10),
    )
    await bus.serve(queue, {f"{queue}.echo": Method(Heartbeat, echo)})
    return bus


async def consumers(url: str, queue: str) -> int:
    async with Bus(url, source="observer") as observer:
        return (await observer.transport.queue_state(queue))[1]


def hb(note: str) -> Heartbeat:
    return Heartbeat(service="web", instance_id="w1", note=note)


async def test_tcp_reset_restores_consumers_and_calls(amqp_url, unique):
    queue = f"{unique}.w"
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat=2"
        seen: list[str] = []
        worker = await start_worker(url, queue, seen)
        try:
            async with Bus(amqp_url, source="client") as client:
                await client.publish(hb("before"))
                await eventually(lambda: seen == ["before"])
                assert await consumers(amqp_url, queue) == 1

                # a call in flight when the connection is cut fails fast, not at its deadline
                slow_call = asyncio.ensure_future(
                    worker.call(f"{unique}.nobody-yet", {}, timeout=10)
                )
                await asyncio.sleep(0)  # one loop turn: the call's request goes out
                await proxy.cut()
                started = time.monotonic()
                with pytest.raises(Exception):  # noqa: B017 - ConnectionLost or NoResponder
                    await slow_call
                assert time.monotonic() - started < 2.0

                await client.publish(hb("during"))  # queued while the worker is away
                await eventually(
                    lambda: worker.transport.reconnects == 1, timeout=10, what="reconnect"
                )
                await eventually(lambda: worker.ready, timeout=5)
                assert await consumers(amqp_url, queue) == 1
                await client.publish(hb("after"))
                await eventually(lambda: seen == ["before", "during", "after"], timeout=10)
                assert await client.call(f"{queue}.echo", hb("rpc").model_dump()) == {"note": "rpc"}
                assert await worker.call(f"{queue}.echo", hb("self").model_dump()) == {
                    "note": "self"
                }
        finally:
            await worker.close()
            async with Bus(amqp_url, source="cleanup") as c:
                await c.transport.delete_queue(queue)
                await c.transport.delete_queue(f"{queue}.dlq")


async def test_a_reconnection_declares_the_recorded_topology_and_not_what_was_deleted(
    amqp_url, unique
):
    """What the transport declared comes back after a cut (here: a queue and its binding the
    broker lost meanwhile), and a queue it deleted stays deleted, with its bindings."""
    kept, deleted, exchange = f"{unique}.kept", f"{unique}.deleted", f"{unique}.x"
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat=2"
        async with Bus(url, source="topology") as bus, Bus(amqp_url, source="other") as other:
            t = bus.transport
            try:
                await t.declare_exchange(exchange, "topic", durable=False)
                for queue in (kept, deleted):
                    await t.declare_queue(QueueSpec(queue, durable=False))
                    await t.bind(queue, exchange, queue)
                await t.delete_queue(deleted)
                await other.transport.delete_queue(kept)  # lost while nobody looks

                await proxy.cut()
                await eventually(lambda: t.reconnects == 1 and t.is_connected, timeout=10)

                await other.transport.publish(exchange, kept, Message(body=b"{}"))
                assert (await other.transport.queue_state(kept))[0] == 1  # declared, bound
                with pytest.raises(TopologyError):
                    await other.transport.queue_state(deleted)
            finally:
                for queue in (kept, deleted):
                    await other.transport.delete_queue(queue)


async def test_blackhole_is_detected_by_heartbeat_and_healed(amqp_url, unique):
    queue = f"{unique}.w"
    async with TcpProxy("127.0.0.1", 5672) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat=1"
        seen: list[str] = []
        worker = await start_worker(url, queue, seen)
        lost: list[BaseException | None] = []
        worker.transport.on_disconnect(lost.append)
        try:
            proxy.blackhole()
            started = time.monotonic()
            await eventually(lambda: lost, timeout=12, what="heartbeat timeout")
            detected = time.monotonic() - started
            # aiormq declares the peer dead after three missed heartbeats: (1 s + 1) * 3
            assert detected < 8, f"partition detected after {detected:.1f} s"
            with pytest.raises(ConnectionLost):
                worker.transport.ready_timeout = 0.2
                await worker.publish(hb("while partitioned"))
            worker.transport.ready_timeout = 10
            proxy.heal()
            await eventually(lambda: worker.ready, timeout=15, what="recovery")
            assert await consumers(amqp_url, queue) == 1
            async with Bus(amqp_url, source="client") as client:
                await client.publish(hb("healed"))
                await eventually(lambda: "healed" in seen, timeout=5)
        finally:
            await worker.close()
            async with Bus(amqp_url, source="cleanup") as c:
                await c.transport.delete_queue(queue)
                await c.transport.delete_queue(f"{queue}.dlq")


@pytest.mark.faults
async def test_broker_restart_restores_consumers_and_flow(private_rabbit, unique):
    url = private_rabbit.url + "?heartbeat=2"
    queue = f"{unique}.w"
    seen: list[str] = []
    worker = await start_worker(url, queue, seen)
    try:
        await private_rabbit.arestart_app()
        await eventually(lambda: worker.transport.reconnects >= 1, timeout=30, what="reconnect")
        await eventually(lambda: worker.ready, timeout=10)
        assert await private_rabbit.aqueue_consumers(queue) == 1
        async with Bus(url, source="client") as client:
            await client.publish(hb("after restart"))
            await eventually(lambda: seen == ["after restart"], timeout=10)
            assert await client.call(f"{queue}.echo", hb("rpc").model_dump()) == {"note": "rpc"}
    finally:
        await worker.close()
