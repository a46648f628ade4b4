"""The bus on top of a transport: event consumption policy and request/reply, on both brokers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import orjson
import pytest
from pydantic import BaseModel

from bus import Bus, Method
from bus.consumer import ConsumerPolicy
from bus.errors import (
    CircuitOpen,
    DeadlineExceeded,
    Invalid,
    NoResponder,
    NotFound,
    Reject,
    Retry,
    TopologyError,
    Unavailable,
)
from bus.message import Delivery, EventMeta, Message, event_meta
from bus.topology import EVENTS, LOG, RPC
from bus.transport import DIRECT_REPLY_TO, QueueSpec
from schemas import EVENT_TYPES, Heartbeat, Register
from tests._wait import eventually

FAST = ConsumerPolicy(max_attempts=3, backoff_initial_s=0.001, backoff_max_s=0.01)


@pytest.fixture
async def bus(broker_url: str) -> AsyncIterator[Bus]:
    async with Bus(broker_url, source="contract") as b:
        yield b


@pytest.fixture
async def queue(bus: Bus, name: str) -> AsyncIterator[str]:
    yield f"{name}.w"
    for q in (f"{name}.w", f"{name}.w.dlq"):
        await bus.transport.delete_queue(q)


def register(instance: str = "web-1", **kw) -> Register:
    return Register(service="web", instance_id=instance, address="127.0.0.1", port=8080, **kw)


async def dead_letters(bus: Bus, queue: str, count: int) -> list[Delivery]:
    got: list[Delivery] = []
    await bus.transport.consume(f"{queue}.dlq", got.append, prefetch=50)
    await eventually(lambda: len(got) >= count, what=f"{count} dead letters")
    return got


async def test_handler_gets_typed_event_with_cloudevents_meta(bus, queue, name):
    seen: list[tuple[Register, EventMeta]] = []

    async def on_register(event: Register, meta: EventMeta) -> None:
        seen.append((event, meta))

    consumer = await bus.subscribe(
        queue, [f"{name}.#", "registry.register"], {"registry.register": on_register}, EVENT_TYPES
    )
    event_id = await bus.publish(register(), traceparent="00-" + "a" * 32 + "-" + "b" * 16 + "-01")
    await eventually(lambda: seen)
    event, meta = seen[0]
    assert event.instance_id == "web-1" and event.ttl_s == 30
    assert (meta.id, meta.type, meta.source) == (event_id, "registry.register", "contract")
    assert meta.traceparent and meta.traceparent.startswith("00-aaaa")
    await eventually(lambda: consumer.stats.handled == 1)
    assert (await bus.transport.queue_state(queue))[0] == 0  # acked


async def test_invalid_payload_is_dead_lettered_at_once_naming_the_field(bus, queue):
    calls = []

    async def on_register(event: Register, meta: EventMeta) -> None:
        calls.append(event)

    await bus.subscribe(
        queue, ["registry.register"], {"registry.register": on_register}, EVENT_TYPES
    )
    await bus.publisher.publish_raw(
        "registry.register", {"service": "web", "instance_id": "w1", "address": "h", "port": 70000}
    )
    await bus.publisher.publish_raw("registry.register", b"not json")
    await bus.publish(register("web-2"))
    dead = await dead_letters(bus, queue, 2)
    errors = {d.message.body[:3]: d.message.headers["x-govbus-error"] for d in dead}
    assert (
        errors[b'{"s']
        == "invalid registry.register: port: Input should be less than or equal to 65535"
    )
    assert "Invalid JSON" in errors[b"not"]
    assert all(d.message.headers["x-govbus-attempts"] == 0 for d in dead)
    await eventually(lambda: [c.instance_id for c in calls] == ["web-2"])  # the worker kept going


async def test_message_without_event_attributes_is_dead_lettered(bus, queue):
    await bus.subscribe(queue, ["registry.heartbeat"], {"registry.heartbeat": _noop}, EVENT_TYPES)
    await bus.transport.publish(EVENTS, "registry.heartbeat", Message(body=b"{}"))  # no id, no time
    (dead,) = await dead_letters(bus, queue, 1)
    assert "undecodable" in dead.message.headers["x-govbus-error"]


async def _noop(event: BaseModel, meta: EventMeta) -> None:
    return None


async def test_transient_failures_are_retried_then_succeed_once(bus, queue):
    attempts: list[int] = []

    async def flaky(event: Heartbeat, meta: EventMeta) -> None:
        attempts.append(1)
        if len(attempts) < 3:
            raise Retry("database busy")

    consumer = await bus.subscribe(
        queue, ["registry.heartbeat"], {"registry.heartbeat": flaky}, EVENT_TYPES, policy=FAST
    )
    await bus.publish(Heartbeat(service="web", instance_id="w1"))
    await eventually(lambda: consumer.stats.handled == 1)
    assert len(attempts) == 3 and consumer.stats.dead_lettered == 0


async def test_exhausted_retries_dead_letter_with_reason_and_attempts(bus, queue):
    async def broken(event: Heartbeat, meta: EventMeta) -> None:
        raise RuntimeError("always fails")

    consumer = await bus.subscribe(
        queue, ["registry.heartbeat"], {"registry.heartbeat": broken}, EVENT_TYPES, policy=FAST
    )
    await bus.publish(Heartbeat(service="web", instance_id="w1"))
    (dead,) = await dead_letters(bus, queue, 1)
    assert dead.message.headers["x-govbus-error"] == "RuntimeError: always fails"
    assert dead.message.headers["x-govbus-attempts"] == 3
    assert dead.message.headers["x-govbus-routing-key"] == "registry.heartbeat"
    assert dead.message.type == "registry.heartbeat"  # the original event, intact
    assert consumer.stats.dead_lettered == 1


async def test_reject_dead_letters_without_retry(bus, queue):
    calls = []

    async def refuse(event: Heartbeat, meta: EventMeta) -> None:
        calls.append(1)
        raise Reject("unknown instance")

    await bus.subscribe(
        queue, ["registry.heartbeat"], {"registry.heartbeat": refuse}, EVENT_TYPES, policy=FAST
    )
    await bus.publish(Heartbeat(service="web", instance_id="w1"))
    (dead,) = await dead_letters(bus, queue, 1)
    assert dead.message.headers["x-govbus-attempts"] == 1 and len(calls) == 1


async def test_events_are_processed_in_order(bus, queue):
    seen: list[str] = []

    async def record(event: Heartbeat, meta: EventMeta) -> None:
        # A yield point inside the handler is the behaviour under test: if the consumer ran
        # two handlers at once, their order would break here.
        await asyncio.sleep(0)
        seen.append(event.note)

    await bus.subscribe(queue, ["registry.heartbeat"], {"registry.heartbeat": record}, EVENT_TYPES)
    await asyncio.gather(
        *(bus.publish(Heartbeat(service="s", instance_id="i", note=str(i))) for i in range(200))
    )
    await eventually(lambda: len(seen) == 200)
    assert seen == [str(i) for i in range(200)]


async def test_unhandled_types_are_acked_and_ignored(bus, queue):
    consumer = await bus.subscribe(
        queue, ["registry.#"], {"registry.heartbeat": _noop}, EVENT_TYPES
    )
    await bus.publish(register())
    await eventually(lambda: consumer.stats.ignored == 1)
    assert (await bus.transport.queue_state(queue))[0] == 0


# -- request/reply ------------------------------------------------------------------------------


class Echo(BaseModel):
    text: str
    delay: float = 0.0


@pytest.fixture
async def echo_server(bus: Bus, name: str) -> AsyncIterator[str]:
    service = f"{name}-svc"

    async def echo(req: Echo) -> dict[str, str]:
        if req.delay:
            await asyncio.sleep(req.delay)  # a slow method: time passing is the behaviour
        if req.text == "missing":
            raise NotFound("no such thing", {"name": req.text})
        if req.text == "crash":
            raise RuntimeError("bug")
        return {"echo": req.text}

    await bus.serve(service, {f"{name}.echo": Method(Echo, echo)})
    yield f"{name}.echo"


async def test_a_request_on_the_wire(bus, name):
    """What any AMQP server of a method receives (SPEC, Wire format): the parameters as a JSON
    object, the deadline as `expiration` (ms), a whole-second `timestamp`, a reply-to address
    and a correlation id; its reply (correlation id, `x-govbus-status`, JSON) is the result."""
    got: list[Delivery] = []
    queue = f"{name}.srv"
    await bus.transport.declare_queue(QueueSpec(queue, durable=False, auto_delete=True))
    await bus.transport.bind(queue, RPC, f"{name}.sum")
    await bus.transport.consume(queue, got.append, prefetch=10)
    before = datetime.now(UTC).replace(microsecond=0)
    call = asyncio.ensure_future(bus.call(f"{name}.sum", {"a": 2, "b": 3}, timeout=4.5))
    (request,) = await eventually(lambda: got, what="the request")
    m = request.message
    assert orjson.loads(m.body) == {"a": 2, "b": 3} and m.content_type == "application/json"
    assert m.expiration_ms == 4500
    assert m.timestamp is not None and m.timestamp.microsecond == 0
    assert before <= m.timestamp <= datetime.now(UTC)
    assert m.reply_to and m.reply_to.startswith(DIRECT_REPLY_TO + ".")
    assert m.correlation_id and not m.persistent
    assert (request.exchange, request.routing_key) == (RPC, f"{name}.sum")
    reply = Message(
        body=b'{"sum": 5}', correlation_id=m.correlation_id, headers={"x-govbus-status": "ok"}
    )
    await bus.transport.publish("", m.reply_to, reply, mandatory=False, confirm=False)
    await request.ack()
    assert await call == {"sum": 5}


async def test_an_event_on_the_wire_has_a_whole_second_timestamp_and_a_precise_ce_time(bus, name):
    got: list[Delivery] = []
    queue = f"{name}.tap"
    await bus.transport.declare_queue(QueueSpec(queue, durable=False, exclusive=True))
    await bus.transport.bind(queue, EVENTS, Register.TYPE)
    await bus.transport.consume(queue, got.append, prefetch=10)
    when = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)
    event_id = await bus.publish(register(name), time=when)
    (delivery,) = await eventually(lambda: got, what="the event")
    m = delivery.message
    assert m.message_id == event_id
    assert m.timestamp == datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    assert m.headers["ce-time"] == "2026-03-04T05:06:07.891234Z"
    assert event_meta(delivery).time == when  # read back at full precision
    await delivery.ack()


async def test_rpc_round_trip_and_typed_errors(bus, echo_server):
    assert await bus.call(echo_server, {"text": "hi"}) == {"echo": "hi"}
    with pytest.raises(NotFound) as info:
        await bus.call(echo_server, {"text": "missing"})
    assert info.value.details == {"name": "missing"}
    with pytest.raises(Invalid) as bad:
        await bus.call(echo_server, {"txt": "typo"})
    assert "text" in bad.value.message
    with pytest.raises(Exception, match="failed: RuntimeError") as crash:
        await bus.call(echo_server, {"text": "crash"})
    assert type(crash.value).__name__ == "InternalError"


async def test_many_concurrent_calls_share_one_connection(bus, echo_server):
    texts = [str(i) for i in range(300)]
    results = await asyncio.gather(*(bus.call(echo_server, {"text": t}) for t in texts))
    assert [r["echo"] for r in results] == texts


async def test_no_responder_fails_at_once(bus, name):
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NoResponder):
        await bus.call(f"{name}.nobody", {}, timeout=5)
    assert loop.time() - started < 1.0


async def test_deadline_is_enforced(bus, echo_server):
    with pytest.raises(DeadlineExceeded):
        await bus.call(echo_server, {"text": "slow", "delay": 1.0}, timeout=0.2)
    assert await bus.call(echo_server, {"text": "after"}) == {"echo": "after"}


async def test_circuit_opens_then_half_opens(broker_url, name):
    async with Bus(broker_url, source="contract") as bus:
        bus.rpc._threshold, bus.rpc._cooldown = 3, 0.3
        for _ in range(3):
            with pytest.raises(NoResponder):
                await bus.call(f"{name}.down", {})
        with pytest.raises(CircuitOpen) as info:
            await bus.call(f"{name}.down", {})
        assert isinstance(info.value, Unavailable) and info.value.retry_after
        await eventually(
            lambda: bus.rpc.breaker(f"{name}.down").state == "half_open", what="the cooldown"
        )

        async def up(req: Echo) -> dict[str, str]:
            return {"echo": req.text}

        await bus.serve(f"{name}-late", {f"{name}.down": Method(Echo, up)})
        assert await bus.call(f"{name}.down", {"text": "probe"}) == {"echo": "probe"}
        assert bus.rpc.breaker(f"{name}.down").state == "closed"


async def test_graceful_stop_finishes_in_flight_work(broker_url, name):
    done: list[str] = []
    started = asyncio.Event()

    async def slow(event: Heartbeat, meta: EventMeta) -> None:
        started.set()
        await asyncio.sleep(0.2)  # work in flight while close() runs: its length is the point
        done.append(meta.id)

    queue = f"{name}.w"
    async with Bus(broker_url, source="observer") as observer:  # keeps memory:// alive
        async with Bus(broker_url, source="contract") as bus:
            await bus.subscribe(
                queue,
                ["registry.heartbeat"],
                {"registry.heartbeat": slow},
                EVENT_TYPES,
                policy=ConsumerPolicy(prefetch=1),
            )
            event_id = await bus.publish(Heartbeat(service="s", instance_id="i"))
            await asyncio.wait_for(started.wait(), 5)
        assert done == [event_id]  # close() waited for the handler, then acked
        assert (await observer.transport.queue_state(queue))[0] == 0

        async def no_consumer() -> bool:
            # RabbitMQ removes a closed connection's consumer from the queue asynchronously:
            # the count may lag the close by a moment (seen under load).
            return (await observer.transport.queue_state(queue))[1] == 0

        await eventually(no_consumer, what="the closed bus's consumer to be gone")
        await observer.transport.delete_queue(queue)
        await observer.transport.delete_queue(f"{queue}.dlq")


async def test_unsubscribe_stops_one_consumer_and_forgets_it(bus, name):
    handled: dict[str, list[str]] = {"kept": [], "dropped": []}

    def handler(which: str):
        async def on_heartbeat(event: Heartbeat, meta: EventMeta) -> None:
            handled[which].append(meta.id)

        return on_heartbeat

    queues = {which: f"{name}.{which}" for which in handled}
    consumers = {
        which: await bus.subscribe(
            queue, ["registry.heartbeat"], {"registry.heartbeat": handler(which)}, EVENT_TYPES
        )
        for which, queue in queues.items()
    }
    await bus.unsubscribe(consumers["dropped"])
    await bus.unsubscribe(consumers["dropped"])  # stopping it again does nothing

    assert bus.consumers == [consumers["kept"]] and bus.ready
    event_id = await bus.publish(Heartbeat(service="s", instance_id="i"))
    await eventually(lambda: handled["kept"] == [event_id])
    # The other queue keeps the event for a consumer to come: nobody takes it from this bus.
    assert await bus.transport.queue_state(queues["dropped"]) == (1, 0)
    assert handled["dropped"] == []
    for queue in queues.values():
        await bus.transport.delete_queue(queue)
        await bus.transport.delete_queue(f"{queue}.dlq")


async def test_unsubscribe_stops_one_server_and_forgets_it(bus, name):
    async def echo(req: Echo) -> dict[str, str]:
        return {"echo": req.text}

    kept = await bus.serve(f"{name}-kept", {f"{name}.kept": Method(Echo, echo)})
    dropped = await bus.serve(f"{name}-dropped", {f"{name}.dropped": Method(Echo, echo)})
    assert await bus.call(f"{name}.dropped", {"text": "hi"}) == {"echo": "hi"}

    await bus.unsubscribe(dropped)

    assert bus.servers == [kept] and bus.ready
    with pytest.raises(NoResponder):  # its queue went with its last consumer
        await bus.call(f"{name}.dropped", {"text": "hi"})
    assert await bus.call(f"{name}.kept", {"text": "still"}) == {"echo": "still"}


async def test_the_log_stream_is_declared_where_the_broker_keeps_one(bus, broker_url):
    assert bus.transport.keeps_log is broker_url.startswith("amqp")
    if bus.transport.keeps_log:
        await bus.transport.queue_state(LOG)  # declared by Bus.start: no TopologyError
    else:
        with pytest.raises(TopologyError):
            await bus.transport.queue_state(LOG)
