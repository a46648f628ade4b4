"""Request/reply: sequential latency (p50, p99) and throughput with 64 calls in flight.

Every system runs a server and a client on two connections of its own, in this process: the
server validates the request into `EchoRequest` and answers an `EchoReply`, the client validates
the reply. Requests are confirmed, mandatory publishes where the system does so by default.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable, Mapping

import aio_pika

from benchmarks._common import EchoReply, EchoRequest, percentile, unique
from bus import Bus, Method

INFLIGHT = 64
WARMUP = 50

Call = Callable[[int], Awaitable[EchoReply]]


async def measure(call: Call, sequential: int, concurrent: int) -> dict[str, float]:
    """Latency of `sequential` calls one after another; throughput of `concurrent` calls
    with `INFLIGHT` of them outstanding at any time."""
    for i in range(WARMUP):
        await call(i)
    latencies = []
    for i in range(sequential):
        began = time.perf_counter()
        reply = await call(i)
        latencies.append(time.perf_counter() - began)
        assert reply.seq == i
    counter = iter(range(concurrent))

    async def lane() -> None:
        for i in counter:
            await call(i)

    began = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(INFLIGHT)))
    elapsed = time.perf_counter() - began
    return {
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "concurrent_per_s": concurrent / elapsed,
    }


async def run_aiopika(url: str, sequential: int, concurrent: int) -> Mapping[str, float]:
    """Raw aio-pika: a server on its own connection, a client with direct reply-to."""
    name = unique("bench.rpc.aiopika.")
    server_conn = await aio_pika.connect(url)
    client_conn = await aio_pika.connect(url)
    try:
        server_channel = await server_conn.channel()
        await server_channel.set_qos(prefetch_count=INFLIGHT)
        queue = await server_channel.declare_queue(name, auto_delete=True)

        async def on_request(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            async with message.process():
                request = EchoRequest.model_validate_json(message.body)
                reply = EchoReply(name=request.name, seq=request.seq)
                assert message.reply_to is not None
                await server_channel.default_exchange.publish(
                    aio_pika.Message(
                        reply.model_dump_json().encode(),
                        content_type="application/json",
                        correlation_id=message.correlation_id,
                    ),
                    routing_key=message.reply_to,
                )

        await queue.consume(on_request)

        channel = await client_conn.channel()
        pending: dict[str, asyncio.Future[bytes]] = {}
        ids = itertools.count()

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            future = pending.pop(message.correlation_id or "", None)
            if future is not None and not future.done():
                future.set_result(message.body)

        replies = await channel.declare_queue("amq.rabbitmq.reply-to", passive=True)
        await replies.consume(on_reply, no_ack=True)

        async def call(seq: int) -> EchoReply:
            correlation_id = str(next(ids))
            future = asyncio.get_running_loop().create_future()
            pending[correlation_id] = future
            await channel.default_exchange.publish(
                aio_pika.Message(
                    EchoRequest(name="bench", seq=seq).model_dump_json().encode(),
                    content_type="application/json",
                    correlation_id=correlation_id,
                    reply_to="amq.rabbitmq.reply-to",
                    expiration=5,
                ),
                routing_key=name,
            )
            body = await asyncio.wait_for(future, 5)
            return EchoReply.model_validate_json(body)

        return await measure(call, sequential, concurrent)
    finally:
        await client_conn.close()
        await server_conn.close()


async def run_faststream(url: str, sequential: int, concurrent: int) -> Mapping[str, float]:
    """FastStream: a typed subscriber that returns its reply, and `broker.request(...)`."""
    from faststream.rabbit import RabbitBroker, RabbitQueue

    name = unique("bench.rpc.faststream.")
    server = RabbitBroker(url, logger=None)
    client = RabbitBroker(url, logger=None)

    @server.subscriber(RabbitQueue(name, auto_delete=True))
    async def echo(request: EchoRequest) -> EchoReply:
        return EchoReply(name=request.name, seq=request.seq)

    await server.start()
    await client.start()
    try:

        async def call(seq: int) -> EchoReply:
            request = EchoRequest(name="bench", seq=seq)
            message = await client.request(request, queue=name, timeout=5)
            return EchoReply.model_validate_json(message.body)

        return await measure(call, sequential, concurrent)
    finally:
        await client.stop()
        await server.stop()


async def run_govbus(url: str, sequential: int, concurrent: int) -> Mapping[str, float]:
    """govbus: `Bus.serve` on one connection, `Bus.call` on another."""
    name = unique("bench.rpc.govbus.")
    method = f"{name}.echo"

    async def echo(request: EchoRequest) -> EchoReply:
        return EchoReply(name=request.name, seq=request.seq)

    async with Bus(url, source="bench-server") as server, Bus(url, source="bench-client") as client:
        await server.serve(name, {method: Method(EchoRequest, echo)}, prefetch=INFLIGHT)

        async def call(seq: int) -> EchoReply:
            reply: EchoReply = await client.call(
                method, EchoRequest(name="bench", seq=seq), reply=EchoReply
            )
            return reply

        return await measure(call, sequential, concurrent)


RUNNERS: dict[str, Callable[[str, int, int], Awaitable[Mapping[str, float]]]] = {
    "aiopika": run_aiopika,
    "faststream": run_faststream,
    "govbus": run_govbus,
}
