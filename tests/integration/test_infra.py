"""The test infrastructure itself: the private RabbitMQ node and the TCP proxy really work."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from tests._proxy import TcpProxy
from tests._rabbit_node import PrivateRabbit

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"


def _via(url: str, port: int) -> str:
    """``url`` with its host and port replaced by 127.0.0.1:<port>."""
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@127.0.0.1:{port}" if auth else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def _connect_watching_close(
    url: str,
) -> tuple[aio_pika.abc.AbstractConnection, asyncio.Event]:
    """Connect; the event is set when the connection is lost (aio-pika's ``is_closed`` only
    turns true once ``close()`` is called)."""
    connection = await aio_pika.connect(url)
    closed = asyncio.Event()
    connection.close_callbacks.add(lambda *_: closed.set())
    return connection, closed


@pytest.mark.faults
async def test_private_rabbit_survives_an_app_restart(
    private_rabbit: PrivateRabbit, unique: str
) -> None:
    assert private_rabbit.startup_seconds is not None
    print(
        f"\nprivate node {private_rabbit.nodename} booted in {private_rabbit.startup_seconds:.2f}s"
    )

    connection, closed = await _connect_watching_close(private_rabbit.url)
    channel = await connection.channel()
    await channel.declare_queue(unique, durable=True, arguments={"x-queue-type": "quorum"})
    await channel.default_exchange.publish(
        aio_pika.Message(b"survives", delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
        routing_key=unique,
    )

    began = time.monotonic()
    await private_rabbit.astop_app()
    stopped = time.monotonic() - began
    await asyncio.wait_for(closed.wait(), 10)
    assert not connection.connected.is_set()
    await connection.close()
    began = time.monotonic()
    await private_rabbit.astart_app()
    started = time.monotonic() - began
    print(f"stop_app {stopped:.2f}s, start_app {started:.2f}s")

    connection, closed = await _connect_watching_close(private_rabbit.url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(
            unique, durable=True, arguments={"x-queue-type": "quorum"}
        )
        message = await queue.get(no_ack=True, fail=False, timeout=10)
        assert message is not None and message.body == b"survives"

        got: asyncio.Queue[bytes] = asyncio.Queue()

        async def on_message(msg: aio_pika.abc.AbstractIncomingMessage) -> None:
            await msg.ack()
            await got.put(msg.body)

        await queue.consume(on_message)
        assert await private_rabbit.aqueue_consumers(unique) == 1
        await channel.default_exchange.publish(aio_pika.Message(b"after"), routing_key=unique)
        assert await asyncio.wait_for(got.get(), 10) == b"after"

        await private_rabbit.aclose_all_connections("infra test")
        await asyncio.wait_for(closed.wait(), 10)
    assert await private_rabbit.aqueue_consumers(unique) == 0


@pytest.mark.rabbitmq
async def test_proxy_cut_closes_the_amqp_connection(amqp_url: str) -> None:
    host, port = urlsplit(amqp_url).hostname or "127.0.0.1", urlsplit(amqp_url).port or 5672
    async with TcpProxy(host, port) as proxy:
        url = _via(amqp_url, proxy.port)
        connection, closed = await _connect_watching_close(url)
        channel = await connection.channel()
        await channel.declare_exchange("amq.topic", passive=True)
        assert proxy.connections == 1

        began = time.monotonic()
        await proxy.cut()
        await asyncio.wait_for(closed.wait(), 5)
        print(f"\nconnection closed {time.monotonic() - began:.3f}s after the cut")
        assert not connection.connected.is_set()
        await connection.close()

        # The proxy still accepts connections after a cut.
        again = await aio_pika.connect(url)
        await again.close()


@pytest.mark.rabbitmq
async def test_proxy_blackhole_holds_bytes_until_heal(amqp_url: str, unique: str) -> None:
    host, port = urlsplit(amqp_url).hostname or "127.0.0.1", urlsplit(amqp_url).port or 5672
    async with TcpProxy(host, port) as proxy:
        url = _via(amqp_url, proxy.port)
        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()

            proxy.blackhole()
            # An established connection: the request is held, not lost.
            declare = asyncio.create_task(channel.declare_queue(unique, exclusive=True))
            # A new connection: accepted, but nothing answers.
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(AMQP_HEADER)
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(reader.readexactly(1), 0.5)
            assert not declare.done()

            proxy.heal()
            queue = await asyncio.wait_for(declare, 5)
            assert queue.name == unique
            # connection.start (a method frame, type 1) arrives once healed
            assert await asyncio.wait_for(reader.readexactly(1), 5) == b"\x01"
            writer.close()
            await writer.wait_closed()
