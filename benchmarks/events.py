"""Events end to end: persistent, confirmed, topic exchange -> quorum queue, validated on receipt.

Every system does the same broker work: it publishes to `govbus.events` (topic; on RabbitMQ
govbus also binds its `govbus.log` stream there, so every system's messages land in it too)
with a routing key unique to the trial, bound to a fresh quorum queue, keeps `window`
publishes in flight (confirms pipelined), consumes with `prefetch`, validates each body into
the same pydantic model and acks. The figure is events per second from the first publish to
the last ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aio_pika

from benchmarks._common import BenchTick, make_tick, tick_model, unique
from bus import Bus, ConsumerPolicy, EventMeta
from bus.topology import EVENTS

WINDOW = 256
PREFETCH = 256


async def pipelined(n: int, window: int, publish: Callable[[int], Awaitable[Any]]) -> None:
    """Publish `n` messages keeping `window` of them in flight (awaiting their confirm)."""
    counter = iter(range(n))

    async def lane() -> None:
        for seq in counter:
            await publish(seq)

    await asyncio.gather(*(lane() for _ in range(min(window, n))))


class _Sink:
    """Counts validated messages; `done` is set at the n-th."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.received = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.received += 1
        if self.received >= self.n:
            self.done.set()


class _Clock:
    """Wall and CPU time of a trial: the CPU time per event does not depend on what else the
    machine runs, so it shows the client's own cost even when the wall-clock figure is noisy."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.cpu = time.process_time()


async def _finish(sink: _Sink, began: _Clock, timeout: float) -> dict[str, float]:
    await asyncio.wait_for(sink.done.wait(), timeout)
    wall = time.perf_counter() - began.wall
    cpu = time.process_time() - began.cpu
    return {"per_s": sink.n / wall, "cpu_us": cpu / sink.n * 1e6}


async def run_aiopika(url: str, n: int, *, timeout: float = 120.0) -> Mapping[str, float]:
    """Raw aio-pika: a confirming channel to publish, another to consume, acks by hand."""
    name = unique("bench.ev.aiopika.")
    model = tick_model(f"{name}.tick")
    connection = await aio_pika.connect(url)
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=PREFETCH)
        exchange = await publish_channel.declare_exchange(
            EVENTS, aio_pika.ExchangeType.TOPIC, durable=True
        )
        queue = await consume_channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await queue.bind(EVENTS, routing_key=model.TYPE)
        sink = _Sink(n)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            model.model_validate_json(message.body)
            await message.ack()
            sink.hit()

        tag = await queue.consume(on_message)

        async def publish(seq: int) -> None:
            await exchange.publish(
                aio_pika.Message(
                    make_tick(model, seq).model_dump_json().encode(),
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    message_id=str(uuid.uuid4()),
                    timestamp=datetime.now(UTC),
                    type=model.TYPE,
                ),
                routing_key=model.TYPE,
                mandatory=True,
            )

        began = _Clock()
        await pipelined(n, WINDOW, publish)
        figures = await _finish(sink, began, timeout)
        await queue.cancel(tag)
        await queue.delete(if_unused=False, if_empty=False)
        return figures
    finally:
        await connection.close()


async def run_faststream(url: str, n: int, *, timeout: float = 120.0) -> Mapping[str, float]:
    """FastStream as its documentation shows: a broker, a publisher, a typed subscriber.

    Its per-message logging is switched off (`logger=None`), as govbus logs nothing per message.
    """
    from faststream.rabbit import (
        Channel,
        ExchangeType,
        QueueType,
        RabbitBroker,
        RabbitExchange,
        RabbitQueue,
    )

    name = unique("bench.ev.faststream.")
    model = tick_model(f"{name}.tick")
    broker = RabbitBroker(url, logger=None)
    exchange = RabbitExchange(EVENTS, type=ExchangeType.TOPIC, durable=True)
    queue = RabbitQueue(name, queue_type=QueueType.QUORUM, durable=True, routing_key=model.TYPE)
    sink = _Sink(n)

    async def handle(body: BenchTick) -> None:
        sink.hit()

    # The handler's annotation is what FastStream validates into: give it the run's model.
    handle.__annotations__["body"] = model
    broker.subscriber(queue, exchange, channel=Channel(prefetch_count=PREFETCH))(handle)
    publisher = broker.publisher(exchange=exchange, routing_key=model.TYPE, persist=True)
    await broker.start()
    try:

        async def publish(seq: int) -> None:
            await publisher.publish(
                make_tick(model, seq), message_id=str(uuid.uuid4()), message_type=model.TYPE
            )

        began = _Clock()
        await pipelined(n, WINDOW, publish)
        figures = await _finish(sink, began, timeout)
    finally:
        await broker.stop()
    await _delete_queues(url, [name])
    return figures


async def run_govbus(url: str, n: int, *, timeout: float = 120.0) -> Mapping[str, float]:
    """govbus: `Bus.publish` from many tasks, `Bus.subscribe` with an `EventConsumer`."""
    name = unique("bench.ev.govbus.")
    model = tick_model(f"{name}.tick")
    sink = _Sink(n)

    async def on_tick(event: BenchTick, meta: EventMeta) -> None:
        sink.hit()

    async with Bus(url, source="bench") as bus:
        consumer = await bus.subscribe(
            name,
            [model.TYPE],
            {model.TYPE: on_tick},
            {model.TYPE: model},
            policy=ConsumerPolicy(prefetch=PREFETCH),
        )

        async def publish(seq: int) -> None:
            await bus.publish(make_tick(model, seq))

        began = _Clock()
        await pipelined(n, WINDOW, publish)
        figures = await _finish(sink, began, timeout)
        await bus.unsubscribe(consumer)
        await bus.transport.delete_queue(name)
        await bus.transport.delete_queue(f"{name}.dlq")
    return figures


async def _delete_queues(url: str, names: list[str]) -> None:
    connection = await aio_pika.connect(url)
    try:
        channel = await connection.channel()
        for name in names:
            with contextlib.suppress(aio_pika.exceptions.AMQPError):
                await channel.queue_delete(name)
    finally:
        await connection.close()


RUNNERS: dict[str, Callable[..., Awaitable[Mapping[str, float]]]] = {
    "aiopika": run_aiopika,
    "faststream": run_faststream,
    "govbus": run_govbus,
}


def quiet_faststream() -> None:
    logging.getLogger("faststream").setLevel(logging.WARNING)
