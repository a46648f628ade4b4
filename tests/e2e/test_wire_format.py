"""What `govbus publish` puts on the wire, read by a plain AMQP client with no govbus code."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aio_pika
import pytest

from bus import Bus, NoResponder

pytestmark = pytest.mark.rabbitmq

GOVBUS = [sys.executable, "-m", "govbus"]


def govbus(
    *args: str, url: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    extra = ["--url", url] if url else []
    return subprocess.run(
        [*GOVBUS, *args, *extra], capture_output=True, text=True, timeout=timeout, check=False
    )


async def test_publish_puts_a_cloudevent_any_amqp_client_can_read(amqp_url):
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True)
        await queue.bind("govbus.events", "registry.register")
        payload = '{"service": "web", "instance_id": "web-1", "address": "127.0.0.1", "port": 8080}'
        before = datetime.now(UTC).replace(microsecond=0)
        result = govbus("publish", "registry.register", payload, url=amqp_url)
        assert result.returncode == 0, result.stderr
        event_id = result.stdout.strip()
        uuid.UUID(event_id)
        message = await queue.get(timeout=5)
        await message.ack()
    finally:
        await connection.close()
    assert message.message_id == event_id
    assert message.type == "registry.register"
    assert message.routing_key == "registry.register"
    assert message.exchange == "govbus.events"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.app_id == "govbus-cli"
    assert message.timestamp is not None and message.timestamp.replace(tzinfo=UTC) >= before
    headers = message.headers
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-source"] == "govbus-cli"
    ce_time = datetime.fromisoformat(str(headers["ce-time"]))
    assert ce_time.tzinfo is not None and str(headers["ce-time"]).endswith("Z")
    # AMQP's timestamp is whole seconds; ce-time keeps the precision.
    assert message.timestamp == ce_time.replace(microsecond=0)
    body = json.loads(message.body)
    assert body["service"] == "web" and body["port"] == 8080 and body["ttl_s"] == 30


async def test_a_request_as_a_plain_amqp_server_reads_and_answers_it(amqp_url, unique):
    """A server in any language: the request's parameters are a JSON object, `expiration` is
    the caller's deadline, `timestamp` whole seconds; a reply with the correlation id and
    `x-govbus-status: ok` is the call's result."""
    method = f"{unique}.sum"
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        rpc = await channel.get_exchange("govbus.rpc", ensure=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(rpc, method)
        async with Bus(amqp_url, source="wire-test") as bus:
            before = datetime.now(UTC).replace(microsecond=0)
            call = asyncio.ensure_future(bus.call(method, {"a": 2, "b": 3}, timeout=4))
            async with queue.iterator() as requests:
                request = await asyncio.wait_for(anext(requests), 5)
            assert json.loads(request.body) == {"a": 2, "b": 3}
            assert request.content_type == "application/json"
            assert request.expiration == 4.0  # aio-pika reads the ms as seconds
            assert request.timestamp is not None and request.timestamp.microsecond == 0
            assert before <= request.timestamp <= datetime.now(UTC)
            assert request.reply_to and request.correlation_id
            await channel.default_exchange.publish(
                aio_pika.Message(
                    b'{"sum": 5}',
                    correlation_id=request.correlation_id,
                    headers={"x-govbus-status": "ok"},
                    content_type="application/json",
                ),
                routing_key=request.reply_to,
            )
            await request.ack()
            assert await call == {"sum": 5}
            # A method nobody serves comes back from the broker at once: no wait for 30 s.
            with pytest.raises(NoResponder):
                await asyncio.wait_for(bus.call(f"{unique}.nobody", {}, timeout=30), 5)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["publish", "registry.register", "{not json"], "JSON is not valid"),
        (["publish", "no.such.type", "{}"], "unknown event type 'no.such.type'"),
        (
            [
                "publish",
                "registry.register",
                '{"service": "web", "instance_id": "w", "address": "h", "port": 0}',
            ],
            "port:",
        ),
        (["publish", "registry.heartbeat", "[1, 2]"], "JSON must be an object"),
    ],
)
def test_publish_bad_input_is_one_line_without_traceback(args, needle):
    result = govbus(*args, url="amqp://guest:guest@127.0.0.1:5672/")
    assert result.returncode != 0
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unreachable_broker_is_reported_quickly():
    started = time.monotonic()
    result = govbus(
        "publish",
        "registry.heartbeat",
        '{"service": "web", "instance_id": "w1"}',
        url="amqp://guest:guest@127.0.0.1:1/",
    )
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert result.stderr.startswith("govbus: error: cannot reach the broker at amqp://127.0.0.1:1/")
    assert "Traceback" not in result.stderr


def test_a_wrong_password_is_an_authentication_failure_not_an_unreachable_broker(amqp_url):
    parts = urlsplit(amqp_url)
    host = f"{parts.hostname}:{parts.port or 5672}"
    result = govbus(
        "publish",
        "registry.heartbeat",
        '{"service": "web", "instance_id": "w1"}',
        url=f"amqp://{parts.username}:not-the-password@{host}/",
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"govbus: error: authentication failed: the broker at amqp://{host}/ refused user "
        f"{parts.username!r} (ACCESS_REFUSED: wrong user name or password)"
    ]
    assert "not-the-password" not in result.stderr + result.stdout


def test_bad_url_names_the_variable():
    result = subprocess.run(
        [*GOVBUS, "publish", "registry.heartbeat", '{"service": "web", "instance_id": "w1"}'],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={"GOVBUS_URL": "http://nope", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0
    assert "GOVBUS_URL" in result.stderr and "Traceback" not in result.stderr


def test_tail_prints_events_as_cloudevents(amqp_url, unique):
    tail = subprocess.Popen(
        [*GOVBUS, "tail", "registry.drain", "--count", "1", "--url", amqp_url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stderr is not None
        assert "tailing" in tail.stderr.readline()  # bound before we publish
        result = govbus(
            "publish",
            "registry.drain",
            json.dumps({"service": "web", "instance_id": unique}),
            url=amqp_url,
        )
        assert result.returncode == 0, result.stderr
        out, _ = tail.communicate(timeout=10)
    finally:
        tail.kill()
    event = json.loads(out.splitlines()[0])
    assert event["id"] == result.stdout.strip()
    assert event["type"] == "registry.drain" and event["specversion"] == "1.0"
    assert event["data"] == {"service": "web", "instance_id": unique}
    assert event["source"] == "govbus-cli" and event["time"].endswith("Z")
