"""Broker semantics govbus relies on, asserted identically on memory:// and RabbitMQ."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bus.errors import TopologyError, Unroutable
from bus.message import Delivery, Message
from bus.transport import DIRECT_REPLY_TO, QueueSpec, Transport
from tests._wait import eventually

QUORUM = {"x-queue-type": "quorum"}


class Inbox:
    def __init__(self) -> None:
        self.items: list[Delivery] = []

    def __call__(self, delivery: Delivery) -> None:
        self.items.append(delivery)

    async def wait(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        await eventually(
            lambda: len(self.items) >= count, timeout=timeout, what=f"{count} deliveries"
        )
        return self.items


async def topic_setup(t: Transport, name: str, *keys: str, args: dict | None = None) -> str:
    await t.declare_exchange(f"{name}.x", "topic", durable=False)
    await t.declare_queue(QueueSpec(f"{name}.q", arguments=args or QUORUM))
    for key in keys:
        await t.bind(f"{name}.q", f"{name}.x", key)
    return f"{name}.q"


@pytest.fixture
async def cleanup(transport: Transport):
    queues: list[str] = []
    yield queues
    for queue in queues:
        await transport.delete_queue(queue)


def msg(body: bytes = b"{}", **kw) -> Message:
    return Message(body=body, **kw)


async def test_properties_round_trip(transport, name, cleanup):
    queue = await topic_setup(transport, name, "a.b")
    cleanup.append(queue)
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    sent = msg(
        b'{"x": 1}',
        message_id="id-1",
        type="a.b",
        timestamp=when,
        app_id="svc",
        correlation_id="c-1",
        headers={"ce-time": "2026-01-02T03:04:05Z", "n": 3},
    )
    await transport.publish(f"{name}.x", "a.b", sent)
    (got,) = await inbox.wait(1)
    m = got.message
    assert (m.body, m.message_id, m.type, m.app_id, m.correlation_id) == (
        b'{"x": 1}',
        "id-1",
        "a.b",
        "svc",
        "c-1",
    )
    assert m.timestamp is not None and m.timestamp.replace(tzinfo=UTC) == when
    assert m.headers["ce-time"] == "2026-01-02T03:04:05Z" and m.headers["n"] == 3
    assert m.content_type == "application/json" and m.persistent
    assert (got.routing_key, got.exchange, got.redelivered) == ("a.b", f"{name}.x", False)
    await got.ack()


async def test_the_timestamp_arrives_in_whole_seconds_utc(transport, name, cleanup):
    """AMQP 0-9-1 carries `timestamp` as whole seconds: the embedded broker delivers what
    RabbitMQ does for a finer (or naive) time."""
    queue = await topic_setup(transport, name, "#")
    cleanup.append(queue)
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    fine = datetime(2026, 1, 2, 3, 4, 5, 987_654, tzinfo=UTC)
    naive = datetime(2026, 1, 2, 3, 4, 6, 500_000)  # taken as UTC
    await transport.publish(f"{name}.x", "a", msg(timestamp=fine))
    await transport.publish(f"{name}.x", "a", msg(timestamp=naive))
    first, second = await inbox.wait(2)
    assert first.message.timestamp == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert second.message.timestamp == datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC)
    assert first.message.timestamp.tzinfo is UTC and second.message.timestamp.tzinfo is UTC
    for got in (first, second):
        await got.ack()


@pytest.mark.parametrize(
    ("binding", "matching", "not_matching"),
    [
        ("registry.*", ["registry.register"], ["registry.instance.expired", "registry"]),
        ("registry.#", ["registry", "registry.instance.expired"], ["resource.created"]),
        ("#.expired", ["expired", "registry.instance.expired"], ["registry.instance"]),
        ("*.instance.*", ["registry.instance.expired"], ["registry.instance", "a.b.instance.c"]),
    ],
)
async def test_topic_routing(transport, name, cleanup, binding, matching, not_matching):
    queue = await topic_setup(transport, name, binding)
    cleanup.append(queue)
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=100)
    for key in not_matching:
        with pytest.raises(Unroutable):
            await transport.publish(f"{name}.x", key, msg())
    for key in matching:
        await transport.publish(f"{name}.x", key, msg())
    got = await inbox.wait(len(matching))
    assert sorted(d.routing_key for d in got) == sorted(matching)


async def test_unroutable_mandatory_is_an_error_and_channel_survives(transport, name, cleanup):
    queue = await topic_setup(transport, name, "only.this")
    cleanup.append(queue)
    with pytest.raises(Unroutable) as info:
        await transport.publish(f"{name}.x", "other.key", msg())
    assert info.value.routing_key == "other.key"
    await transport.publish(f"{name}.x", "only.this", msg())
    assert (await transport.queue_state(queue))[0] == 1


async def test_unknown_exchange_is_a_topology_error_and_publishing_goes_on(
    transport, name, cleanup
):
    queue = await topic_setup(transport, name, "k")
    cleanup.append(queue)
    with pytest.raises(TopologyError):
        await transport.publish(f"{name}.missing", "k", msg())
    await transport.publish(f"{name}.x", "k", msg())
    assert (await transport.queue_state(queue))[0] == 1


async def test_redeclare_with_other_arguments_is_refused(transport, name, cleanup):
    await transport.declare_queue(QueueSpec(f"{name}.q", arguments=QUORUM))
    cleanup.append(f"{name}.q")
    await transport.declare_queue(QueueSpec(f"{name}.q", arguments=QUORUM))  # idempotent
    with pytest.raises(TopologyError):
        await transport.declare_queue(QueueSpec(f"{name}.q", arguments={"x-queue-type": "classic"}))


async def test_competing_consumers_share_round_robin(transport, name, cleanup):
    queue = await topic_setup(transport, name, "#")
    cleanup.append(queue)
    a, b = Inbox(), Inbox()
    await transport.consume(queue, a, prefetch=100)
    await transport.consume(queue, b, prefetch=100)
    for i in range(20):
        await transport.publish(f"{name}.x", "k", msg(str(i).encode()))
    await eventually(lambda: len(a.items) + len(b.items) == 20)
    assert len(a.items) == len(b.items) == 10
    assert sorted(int(d.message.body) for d in a.items + b.items) == list(range(20))


async def test_prefetch_bounds_unacked_deliveries(transport, name, cleanup):
    queue = await topic_setup(transport, name, "#")
    cleanup.append(queue)
    for i in range(10):
        await transport.publish(f"{name}.x", "k", msg(str(i).encode()))
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=3)
    await inbox.wait(3)
    # No marker can pass a full prefetch window, so ask the broker instead: seven messages are
    # still ready, so exactly three left the queue and no excess delivery is on its way.
    assert (await transport.queue_state(queue))[0] == 7
    assert len(inbox.items) == 3
    await inbox.items[0].ack()
    await inbox.wait(4)
    assert [int(d.message.body) for d in inbox.items] == [0, 1, 2, 3]


async def test_nack_requeue_redelivers_with_flag_and_count(transport, name, cleanup):
    queue = await topic_setup(transport, name, "#")
    cleanup.append(queue)
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=1)
    await transport.publish(f"{name}.x", "k", msg(b"1", message_id="m1"))
    (first,) = await inbox.wait(1)
    assert not first.redelivered and first.delivery_count == 0
    await first.nack(requeue=True)
    second = (await inbox.wait(2))[1]
    assert second.redelivered and second.delivery_count == 1
    assert second.message.message_id == "m1"
    await second.ack()


async def test_delivery_limit_dead_letters_with_reason(transport, name, cleanup):
    await transport.declare_exchange(f"{name}.dlx", "topic", durable=False)
    await transport.declare_queue(QueueSpec(f"{name}.dlq", arguments=QUORUM))
    await transport.bind(f"{name}.dlq", f"{name}.dlx", "#")
    args = {
        **QUORUM,
        "x-delivery-limit": 2,
        "x-dead-letter-exchange": f"{name}.dlx",
        "x-dead-letter-routing-key": f"{name}.q",
    }
    queue = await topic_setup(transport, name, "#", args=args)
    cleanup.extend([queue, f"{name}.dlq"])
    inbox, dead = Inbox(), Inbox()
    await transport.consume(queue, inbox, prefetch=1)
    await transport.consume(f"{name}.dlq", dead, prefetch=10)
    await transport.publish(f"{name}.x", "orig.key", msg(b"poison"))
    for attempt in range(3):  # limit 2: delivered 3 times, then dead-lettered
        delivery = (await inbox.wait(attempt + 1))[attempt]
        await delivery.nack(requeue=True)
    (dl,) = await dead.wait(1)
    assert dl.message.body == b"poison"
    assert dl.routing_key == f"{name}.q"
    assert dl.message.headers["x-first-death-reason"] == "delivery_limit"
    # No fourth delivery: a marker published after the dead-lettering is the next one (one
    # queue delivers in order, so a fourth delivery of the poison would come before it).
    await transport.publish(f"{name}.x", "orig.key", msg(b"marker"))
    got = await inbox.wait(4)
    assert [d.message.body for d in got] == [b"poison"] * 3 + [b"marker"]


async def test_reject_dead_letters_with_x_death(transport, name, cleanup):
    await transport.declare_exchange(f"{name}.dlx", "topic", durable=False)
    await transport.declare_queue(QueueSpec(f"{name}.dlq", arguments=QUORUM))
    await transport.bind(f"{name}.dlq", f"{name}.dlx", "#")
    args = {**QUORUM, "x-dead-letter-exchange": f"{name}.dlx"}
    queue = await topic_setup(transport, name, "#", args=args)
    cleanup.extend([queue, f"{name}.dlq"])
    inbox, dead = Inbox(), Inbox()
    await transport.consume(queue, inbox, prefetch=1)
    await transport.consume(f"{name}.dlq", dead, prefetch=10)
    await transport.publish(f"{name}.x", "a.b", msg(b"x", headers={"keep": "me"}))
    (got,) = await inbox.wait(1)
    await got.nack(requeue=False)
    (dl,) = await dead.wait(1)
    death = dl.message.headers["x-death"][0]
    assert death["reason"] == "rejected" and death["queue"] == queue
    assert dl.message.headers["keep"] == "me"
    assert dl.routing_key == "a.b"  # no dead-letter routing key: the original one


async def test_closing_a_consumer_returns_unacked_messages(transport, name, cleanup):
    queue = await topic_setup(transport, name, "#")
    cleanup.append(queue)
    first = Inbox()
    sub = await transport.consume(queue, first, prefetch=5)
    for i in range(3):
        await transport.publish(f"{name}.x", "k", msg(str(i).encode()))
    await first.wait(3)
    await first.items[0].ack()
    await sub.close()
    second = Inbox()
    await transport.consume(queue, second, prefetch=5)
    got = await second.wait(2)
    assert [int(d.message.body) for d in got] == [1, 2]
    assert all(d.redelivered for d in got)


async def test_direct_reply_to_round_trip(transport, name, cleanup):
    await transport.declare_exchange(f"{name}.rpc", "direct", durable=False)
    await transport.declare_queue(QueueSpec(f"{name}.srv", durable=False, auto_delete=True))
    await transport.bind(f"{name}.srv", f"{name}.rpc", "echo")
    replies = Inbox()
    await transport.consume_replies(replies)

    def serve(delivery: Delivery) -> None:
        async def answer() -> None:
            m = delivery.message
            assert m.reply_to and m.reply_to.startswith(DIRECT_REPLY_TO + ".")
            await transport.publish(
                "",
                m.reply_to,
                msg(m.body.upper(), correlation_id=m.correlation_id),
                mandatory=False,
                confirm=False,
            )
            await delivery.ack()

        asyncio.get_running_loop().create_task(answer())

    await transport.consume(f"{name}.srv", serve, prefetch=10)
    await transport.publish(
        f"{name}.rpc",
        "echo",
        msg(b"hi", reply_to=DIRECT_REPLY_TO, correlation_id="c9", persistent=False),
    )
    (reply,) = await replies.wait(1)
    assert (reply.message.body, reply.message.correlation_id) == (b"HI", "c9")


async def test_auto_delete_queue_vanishes_with_last_consumer(transport, name):
    await transport.declare_exchange(f"{name}.rpc", "direct", durable=False)
    await transport.declare_queue(QueueSpec(f"{name}.srv", durable=False, auto_delete=True))
    await transport.bind(f"{name}.srv", f"{name}.rpc", "m")
    sub1 = await transport.consume(f"{name}.srv", Inbox(), prefetch=1)
    sub2 = await transport.consume(f"{name}.srv", Inbox(), prefetch=1)
    await sub1.close()
    await transport.publish(f"{name}.rpc", "m", msg(persistent=False))  # still bound
    await sub2.close()
    with pytest.raises(Unroutable):
        await transport.publish(f"{name}.rpc", "m", msg(persistent=False))


async def test_expired_messages_are_dropped(transport, name, cleanup):
    queue = await topic_setup(transport, name, "#", args={})
    cleanup.append(queue)
    await transport.publish(f"{name}.x", "k", msg(b"old", expiration_ms=50))
    await transport.publish(f"{name}.x", "k", msg(b"new"))
    await asyncio.sleep(0.15)  # the TTL runs on the real clock: time passing is the behaviour
    inbox = Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    (got,) = await inbox.wait(1)
    assert got.message.body == b"new"
    # Nothing else arrives: a marker published now is the next delivery, "old" never is.
    await transport.publish(f"{name}.x", "k", msg(b"marker"))
    await inbox.wait(2)
    assert [d.message.body for d in inbox.items] == [b"new", b"marker"]


async def test_stream_queue_reads_from_first_offset(transport, name, cleanup):
    stream_args = {"x-queue-type": "stream"}
    queue = await topic_setup(transport, name, "#", args=stream_args)
    cleanup.append(queue)
    for i in range(5):
        await transport.publish(f"{name}.x", "k", msg(str(i).encode()))
    for _ in range(2):  # two readers see the whole log: a stream is not consumed away
        inbox = Inbox()
        sub = await transport.consume(
            queue, inbox, prefetch=2, arguments={"x-stream-offset": "first"}
        )
        got = []
        while len(got) < 5:
            batch = await inbox.wait(len(got) + 1)
            for d in batch[len(got) :]:
                got.append(int(d.message.body))
                await d.ack()
        assert got == [0, 1, 2, 3, 4]
        await sub.close()


async def test_a_delivery_reports_the_exchange_it_came_through(transport, name, cleanup):
    """What the consumers' provenance check reads: the topic exchange, the default exchange
    (written into the queue by name), the same after a requeue, and the dead-letter exchange
    for a broker dead letter; a stream entry keeps the exchange it was written through."""
    await transport.declare_exchange(f"{name}.dlx", "topic", durable=False)
    await transport.declare_queue(QueueSpec(f"{name}.dlq", arguments=QUORUM))
    await transport.bind(f"{name}.dlq", f"{name}.dlx", "#")
    args = {**QUORUM, "x-dead-letter-exchange": f"{name}.dlx"}
    queue = await topic_setup(transport, name, "#", args=args)
    await transport.declare_queue(QueueSpec(f"{name}.log", arguments={"x-queue-type": "stream"}))
    await transport.bind(f"{name}.log", f"{name}.x", "#")
    cleanup.extend([queue, f"{name}.dlq", f"{name}.log"])
    inbox, dead, log = Inbox(), Inbox(), Inbox()
    await transport.consume(queue, inbox, prefetch=10)
    await transport.consume(f"{name}.dlq", dead, prefetch=10)
    await transport.consume(f"{name}.log", log, prefetch=10, arguments={"x-stream-offset": "first"})
    await transport.publish(f"{name}.x", "a.b", msg(b"routed"))
    await transport.publish("", queue, msg(b"by-name"))
    await transport.publish("", f"{name}.log", msg(b"by-name"))
    got = await inbox.wait(2)
    assert {(d.message.body, d.exchange, d.routing_key) for d in got} == {
        (b"routed", f"{name}.x", "a.b"),
        (b"by-name", "", queue),
    }
    routed = next(d for d in got if d.message.body == b"routed")
    await routed.nack(requeue=True)
    again = (await inbox.wait(3))[2]
    assert (again.message.body, again.redelivered, again.exchange) == (b"routed", True, f"{name}.x")
    await again.nack(requeue=False)
    (dl,) = await dead.wait(1)
    assert (dl.message.body, dl.exchange) == (b"routed", f"{name}.dlx")
    entries = await log.wait(2)
    assert [(d.message.body, d.exchange) for d in entries] == [
        (b"routed", f"{name}.x"),
        (b"by-name", ""),
    ]
