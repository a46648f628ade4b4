"""Only what came through `govbus.events` (events) or `govbus.rpc` (requests) is acted on.

Every user that sends RPC replies may write to the default exchange, and through it into any
queue by name. Whatever reaches a worker queue, an RPC queue, a tap or the log stream that way
is refused: dead-lettered with the reason (workers), never answered (RPC servers), never passed
on (taps). On both brokers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from bus import Bus, Method
from bus.message import Delivery, EventMeta, Message, event_message
from bus.topology import EVENTS, declare_worker_queue, worker_queue
from bus.transport import DIRECT_REPLY_TO, QueueSpec, Transport, create_transport
from schemas import EVENT_TYPES, Register
from tests._wait import eventually


@pytest.fixture
async def bus(broker_url: str) -> AsyncIterator[Bus]:
    async with Bus(broker_url, source="contract") as b:
        yield b


@pytest.fixture
async def forger(broker_url: str) -> AsyncIterator[Transport]:
    """Another connection: a user that may write to the default exchange."""
    t = create_transport(broker_url, name="forger")
    await t.connect()
    yield t
    await t.close()


@pytest.fixture
async def queue(bus: Bus, name: str) -> AsyncIterator[str]:
    yield f"{name}.w"
    for q in (f"{name}.w", f"{name}.w.dlq"):
        await bus.transport.delete_queue(q)


def forged_register(instance: str) -> Message:
    body = Register(service="web", instance_id=instance, address="10.0.0.1", port=80)
    return event_message(
        event_type=Register.TYPE,
        body=body.model_dump_json().encode(),
        event_id=f"forged-{instance}",
        source="forger",
        time=datetime.now(UTC),
    )


async def dead_letters(bus: Bus, queue: str, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    await bus.transport.consume(f"{queue}.dlq", got.append, prefetch=50)
    await eventually(lambda: len(got) >= count, what=f"{count} dead letters")
    return got


async def test_an_event_written_into_a_worker_queue_by_name_is_dead_lettered_unapplied(
    bus, forger, queue, name
):
    applied: list[str] = []

    async def on_register(event: Register, meta: EventMeta) -> None:
        applied.append(event.instance_id)

    consumer = await bus.subscribe(
        queue, [Register.TYPE], {Register.TYPE: on_register}, EVENT_TYPES
    )
    await forger.publish("", queue, forged_register(f"{name}-forged"))
    await bus.publish(Register(service="web", instance_id=f"{name}-real", address="h", port=80))
    (dead,) = await dead_letters(bus, queue, 1)
    assert dead.message.headers["x-govbus-error"] == (
        f"refused: reached {queue} through the default exchange; only govbus.events is accepted"
    )
    assert dead.message.headers["x-govbus-exchange"] == ""
    assert dead.message.message_id == f"forged-{name}-forged"  # kept intact, as evidence
    await eventually(lambda: applied == [f"{name}-real"], what="the real registration")
    assert consumer.stats.refused == 1 and consumer.stats.handled == 1
    assert (await bus.transport.queue_state(queue))[0] == 0


class Echo(BaseModel):
    text: str


async def _echo(request: Echo) -> dict[str, str]:
    return {"echo": request.text}


@pytest.mark.parametrize("dead_letter", [True, False], ids=["dead-lettered", "dropped"])
async def test_a_request_written_into_an_rpc_queue_by_name_is_never_answered(
    bus, forger, queue, name, dead_letter
):
    await declare_worker_queue(bus.transport, worker_queue(queue), [f"{name}.none"])
    server = await bus.serve(
        f"{name}-svc",
        {f"{name}.echo": Method(Echo, _echo)},
        dead_letter=queue if dead_letter else None,
    )
    replies: list[Delivery] = []
    await forger.consume_replies(replies.append)
    forged = Message(
        body=b'{"text": "forged"}',
        correlation_id="forged",
        reply_to=DIRECT_REPLY_TO,
        persistent=False,
        expiration_ms=60_000,
    )
    await forger.publish("", server.queue.name, forged)
    await eventually(lambda: server.refused == 1, what="the forged request refused")
    # The server still answers real requests, from the same caller too.
    assert await bus.call(f"{name}.echo", {"text": "real"}) == {"echo": "real"}
    real = Message(
        body=b'{"text": "real"}', correlation_id="real", reply_to=DIRECT_REPLY_TO, persistent=False
    )
    await forger.publish("govbus.rpc", f"{name}.echo", real)
    await eventually(lambda: replies, what="the reply to the real request")
    assert [r.message.correlation_id for r in replies] == ["real"]
    assert server.served == 2
    if dead_letter:
        (dead,) = await dead_letters(bus, queue, 1)
        assert dead.message.headers["x-govbus-error"] == (
            f"refused: reached {server.queue.name} through the default exchange; "
            "only govbus.rpc is accepted"
        )
        assert dead.message.correlation_id == "forged"
        assert dead.message.expiration_ms is None  # evidence does not expire
    else:
        assert (await bus.transport.queue_state(f"{queue}.dlq"))[0] == 0


async def test_a_tap_passes_on_only_what_came_through_govbus_events(bus, forger, name):
    seen: list[str | None] = []
    tap = await bus.tap([f"{name}.#"], lambda d: seen.append(d.message.message_id))
    await forger.publish("", tap.name, forged_register("x"))
    await bus.transport.publish(EVENTS, f"{name}.real", Message(body=b"{}", message_id="real"))
    await eventually(lambda: seen == ["real"] and tap.dropped == 1, what="one event, one drop")
    await eventually(lambda: tap._acker is None, what="everything acked")
    assert await bus.transport.queue_state(tap.name) == (0, 1)
    await tap.close()
    assert tap not in bus.taps


async def test_a_stream_tap_passes_on_only_what_came_through_govbus_events(bus, forger, name):
    stream = f"{name}.log"
    await bus.transport.declare_queue(QueueSpec(stream, arguments={"x-queue-type": "stream"}))
    await bus.transport.bind(stream, EVENTS, f"{name}.#")
    try:
        await bus.transport.publish(EVENTS, f"{name}.a", Message(body=b"{}", message_id="a"))
        await forger.publish("", stream, forged_register("x"))
        await bus.transport.publish(EVENTS, f"{name}.b", Message(body=b"{}", message_id="b"))
        seen: list[str | None] = []
        tap = await bus.tap(
            [f"{name}.b"], lambda d: seen.append(d.message.message_id), stream=stream
        )
        await eventually(lambda: tap.dropped == 1 and seen == ["b"], what="b passed, one drop")
        await tap.close()
    finally:
        await bus.transport.delete_queue(stream)
