"""Least privilege holds with the users of compose/rabbitmq/definitions.json.

A fresh private RabbitMQ node imports the definitions; the discovery and manager workers and
the edge run on connections as their own users (`discovery`, `manager`, `edge`). The legitimate
paths work: the edge registers instances, the manager creates a VM through RPC and places it,
discovery and manager publish what they derive. Then every user tries what it must not do, with
a plain AMQP client: publish another component's event types, write into another component's
queues through the default exchange (events, and requests into `govbus.rpc.<service>`),
publish or bind to `govbus.dlx` with another component's key, consume or declare or delete
another component's queues. Each is refused by the broker (ACCESS_REFUSED) or refused by the
component (dead-lettered with the reason, or dropped by a tap) and has no effect.

The matrix (action, user, result) is written to tests/artifacts/least_privilege.md and printed.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiormq
import orjson
import pytest

from bus import AccessRefused, Bus, NotFound, Tap
from bus.message import Delivery, event_message
from bus.settings import load_settings
from bus.topology import LOG
from govbus import components
from http_edge import create_app
from schemas import Heartbeat, ResourceDrift
from tests._edge_stack import SECRET, bearer
from tests._rabbit_node import PrivateRabbit
from tests._wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACT = ROOT / "tests" / "artifacts" / "least_privilege.md"
PASSWORDS = {"admin": "admin-secret", "discovery": "discovery-secret"}
PASSWORDS |= {"manager": "manager-secret", "edge": "edge-secret"}

# The event types each component publishes (SPEC, Events); host agents publish the last.
PUBLISHES = {
    "discovery": [
        "registry.instance.registered",
        "registry.instance.status_changed",
        "registry.instance.expired",
        "registry.instance.deregistered",
        "registry.protection.entered",
        "registry.protection.exited",
        "registry.heartbeat.unknown",
    ],
    "manager": [
        "resource.created",
        "resource.updated",
        "resource.status_changed",
        "resource.deleted",
        "resource.drift",
    ],
    "edge": ["registry.register", "registry.heartbeat", "registry.deregister", "registry.drain"],
    "host agent": ["resource.observed"],
}
QUEUES = {
    "discovery": ["govbus.discovery", "govbus.discovery.dlq", "govbus.rpc.discovery"],
    "manager": ["govbus.manager", "govbus.manager.dlq", "govbus.rpc.manager"],
}
COMPONENTS = ("discovery", "manager", "edge")
REFUSED = "refused by the broker (ACCESS_REFUSED)"


@dataclass
class Matrix:
    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, action: str, user: str, result: str) -> None:
        self.rows.append((action, user, result))

    def markdown(self) -> str:
        lines = ["| action | user | result |", "|---|---|---|"]
        lines += [f"| {a} | `{u}` | {r} |" for a, u, r in self.rows]
        return "\n".join(lines) + "\n"


def url(node: PrivateRabbit, user: str) -> str:
    return f"amqp://{user}:{PASSWORDS[user]}@127.0.0.1:{node.port}/"


Op = Callable[[aio_pika.abc.AbstractChannel], Awaitable[Any]]


async def attempt(node: PrivateRabbit, user: str, op: Op) -> str:
    """Run `op` on a fresh channel (with publisher confirms) as `user`: "allowed" or why not."""
    connection = await aio_pika.connect(url(node, user))
    try:
        channel = await connection.channel(publisher_confirms=True)
        try:
            await op(channel)
        except aiormq.exceptions.ChannelAccessRefused:
            return REFUSED
        return "allowed"
    finally:
        await connection.close()


def forged(event_type: str, payload: dict[str, Any], **props: Any) -> aio_pika.Message:
    """An event exactly as govbus writes it (CloudEvents binary mode), or a request."""
    message = event_message(
        event_type=event_type,
        body=orjson.dumps(payload),
        event_id=f"forged-{uuid.uuid4().hex[:12]}",
        source="forger",
        time=datetime.now(UTC),
    )
    return aio_pika.Message(
        message.body,
        message_id=message.message_id,
        type=message.type,
        app_id=message.app_id,
        timestamp=message.timestamp,
        headers=message.headers,
        content_type="application/json",
        **props,
    )


def publish(exchange: str, key: str, message: aio_pika.Message) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        target = (
            channel.default_exchange
            if exchange == ""
            else await channel.get_exchange(exchange, ensure=False)
        )
        await target.publish(message, routing_key=key, mandatory=False)

    return op


async def _ignore(message: aio_pika.abc.AbstractIncomingMessage) -> None:
    return None


def consume(queue: str) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        await (await channel.get_queue(queue, ensure=False)).consume(_ignore)

    return op


def declare(queue: str) -> Op:
    """Declare `queue` as its owner does (a declaration takes configure permission)."""

    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        if queue.startswith("govbus.rpc."):
            await channel.declare_queue(queue, durable=False, auto_delete=True)
            return
        args: dict[str, Any] = {"x-queue-type": "quorum"}
        if not queue.endswith(".dlq"):
            args |= {"x-delivery-limit": 5, "x-dead-letter-exchange": "govbus.dlx"}
            args["x-dead-letter-routing-key"] = queue
        await channel.declare_queue(queue, durable=True, arguments=args)

    return op


def delete(queue: str) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        await channel.queue_delete(queue)

    return op


def bind(queue: str, exchange: str, key: str) -> Op:
    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        await (await channel.get_queue(queue, ensure=False)).bind(exchange, key)

    return op


@dataclass
class Deployment:
    node: PrivateRabbit
    admin: Bus
    edge_bus: Bus
    client: Any
    sse: Tap  # what the edge's GET /v1/events takes, as user edge
    sse_seen: list[Delivery]
    seen: list[Delivery]  # every event, as an operator sees them
    dead: dict[str, list[Delivery]]  # the entries of govbus.<worker>.dlq by worker queue
    planted: str | None = None

    def seen_types(self, event_type: str) -> list[dict[str, Any]]:
        return [orjson.loads(e.message.body) for e in self.seen if e.message.type == event_type]

    def registered(self, instance_id: str) -> bool:
        events = self.seen_types("registry.instance.registered")
        return any(e["instance"]["instance_id"] == instance_id for e in events)

    def drift_names(self) -> set[str]:
        return {
            r["name"] for e in self.seen_types("resource.drift") for r in e.get("unexpected", [])
        }

    def dead_letter(self, queue: str, message_id: str | None) -> Delivery | None:
        return next((e for e in self.dead[queue] if e.message.message_id == message_id), None)

    async def refused(self, queue: str, message_id: str | None) -> str:
        """Wait for the worker to dead-letter `message_id`; its reason."""
        entry = await eventually(
            lambda: self.dead_letter(queue, message_id), timeout=15, what=f"{queue}.dlq entry"
        )
        reason = str(entry.message.headers["x-govbus-error"])
        assert reason.startswith("refused: ") and "through the default exchange" in reason
        return reason


@contextlib.asynccontextmanager
async def deployment(node: PrivateRabbit, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with contextlib.AsyncExitStack() as stack:
        for name in ("discovery", "manager"):
            stored = load_settings(db=f"sqlite+aiosqlite:///{tmp_path / name}.db")
            await stack.enter_async_context(
                components.running_component(components.COMPONENTS[name], url(node, name), stored)
            )
        edge_bus = await stack.enter_async_context(Bus(url(node, "edge"), source="govbus/edge"))
        app = create_app(bus=edge_bus, settings=load_settings(auth_secret=SECRET))
        test_app = await stack.enter_async_context(app.test_app())
        sse_seen: list[Delivery] = []
        sse = await edge_bus.tap(
            ["registry.#"], sse_seen.append, prefix="govbus.edge.sse", max_length=1000
        )
        admin = await stack.enter_async_context(Bus(url(node, "admin"), source="operator"))
        seen: list[Delivery] = []
        await admin.tap(["#"], seen.append, prefix="govbus.test.watch")
        dead: dict[str, list[Delivery]] = {"govbus.discovery": [], "govbus.manager": []}
        for queue, entries in dead.items():
            await admin.transport.consume(f"{queue}.dlq", entries.append, prefetch=100)
        client = test_app.test_client()
        yield Deployment(node, admin, edge_bus, client, sse, sse_seen, seen, dead)


async def test_no_component_can_act_for_another(compose_node: PrivateRabbit, tmp_path: Path):
    matrix = Matrix()
    try:
        async with deployment(compose_node, tmp_path) as d:
            await legitimate_paths(d, matrix)
            await forbidden_publishes(d, matrix)
            await forged_events(d, matrix)
            await forged_requests(d, matrix)
            await dead_letter_exchange(d, matrix)
            await other_queues(d, matrix)
            await writes_the_components_drop(d, matrix)
            await nothing_else_dead_lettered(d)
    finally:
        ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
        ARTIFACT.write_text("# Least privilege (compose users)\n\n" + matrix.markdown())
        print("\n" + matrix.markdown())


async def legitimate_paths(d: Deployment, matrix: Matrix) -> None:
    c, h = d.client, bearer()
    host = {"service": "host", "instance_id": "host-1", "address": "10.0.0.9", "port": 22}
    r = await c.post("/v1/instances", headers=h, json=host)
    assert r.status_code == 202, await r.get_data()
    await eventually(
        lambda: d.registered("host-1"), timeout=15, what="registry.instance.registered host-1"
    )
    matrix.add("register an instance (POST /v1/instances)", "edge", "works: registered")
    matrix.add(
        "publish derived events (registry.instance.registered)", "discovery", "works: published"
    )
    spec = {"kind": "vm", "name": "vm-1", "vcpus": 1, "memory_mb": 512, "image": "debian-12"}
    r = await c.post("/v1/resources", headers=h, json=spec)
    assert r.status_code == 201, await r.get_data()
    assert (await r.get_json())["host"] == "host-1"  # placed by discovery.pick
    await eventually(lambda: d.seen_types("resource.created"), timeout=15, what="created")
    matrix.add(
        "create a VM (POST /v1/resources: manager.create, then discovery.pick)",
        "edge, manager",
        "works: placed on host-1, resource.created published",
    )


async def forbidden_publishes(d: Deployment, matrix: Matrix) -> None:
    for user in COMPONENTS:
        for owner, types in PUBLISHES.items():
            if owner == user:
                continue
            for event_type in types:
                result = await attempt(
                    d.node, user, publish("govbus.events", event_type, forged(event_type, {}))
                )
                matrix.add(f"publish `{event_type}` ({owner}'s) to govbus.events", user, result)
                assert result == REFUSED, (user, event_type)
    assert not [e for e in d.seen if (e.message.app_id or "") == "forger"]
    # Through govbus itself: a clear error, and the connection goes on publishing.
    with pytest.raises(AccessRefused, match=r"resource\.drift"):
        await d.edge_bus.publish(ResourceDrift(host="host-1"))
    await d.edge_bus.publish(Heartbeat(service="host", instance_id="host-1"))


async def forged_events(d: Deployment, matrix: Matrix) -> None:
    """Events written into a worker queue by name: refused by the worker, no effect."""
    register = forged(
        "registry.register",
        {"service": "web", "instance_id": "forged-web", "address": "10.6.6.6", "port": 80},
    )
    result = await attempt(d.node, "manager", publish("", "govbus.discovery", register))
    assert result == "allowed"  # amq.default: RPC servers reply through it
    dead = await d.refused("govbus.discovery", register.message_id)
    # the next event of the queue is applied, so the forged one was taken and not applied
    r = await d.client.post(
        "/v1/instances",
        headers=bearer(),
        json={"service": "web", "instance_id": "web-1", "address": "10.0.0.1", "port": 80},
    )
    assert r.status_code == 202
    await eventually(lambda: d.registered("web-1"), timeout=15, what="web-1 registered")
    with pytest.raises(NotFound):
        await d.admin.call("discovery.instance", {"instance_id": "forged-web"})
    assert not d.registered("forged-web")
    matrix.add(
        "write `registry.register` into govbus.discovery through amq.default",
        "manager",
        f"dead-lettered (`{dead}`); not registered",
    )

    observed = forged(
        "resource.observed",
        {"host": "host-1", "resources": [{"kind": "vm", "name": "ghost-vm", "status": "active"}]},
    )
    result = await attempt(d.node, "discovery", publish("", "govbus.manager", observed))
    assert result == "allowed"
    dead = await d.refused("govbus.manager", observed.message_id)
    # a host agent's own report (admin here) is compared, and its drift published
    report = forged(
        "resource.observed",
        {"host": "host-1", "resources": [{"kind": "vm", "name": "real-vm", "status": "active"}]},
    )
    assert await attempt(d.node, "admin", publish("govbus.events", "resource.observed", report))
    await eventually(lambda: d.drift_names() & {"real-vm"}, timeout=15, what="real drift")
    assert "ghost-vm" not in d.drift_names()
    matrix.add(
        "publish `resource.observed` to govbus.events (a host agent)",
        "admin",
        "works: resource.drift published",
    )
    matrix.add(
        "write `resource.observed` into govbus.manager through amq.default",
        "discovery",
        f"dead-lettered (`{dead}`); no resource.drift",
    )

    for queue in ("govbus.discovery", "govbus.manager"):
        result = await attempt(d.node, "edge", publish("", queue, forged("registry.drain", {})))
        matrix.add(f"write an event into {queue} through amq.default", "edge", result)
        assert result == REFUSED


async def forged_requests(d: Deployment, matrix: Matrix) -> None:
    """Requests written into an RPC queue by name: never answered, dead-lettered."""
    cases = [
        (
            "discovery",
            "govbus.manager",
            "manager.create",
            {"spec": {"kind": "network", "name": "forged-net", "cidr": "10.9.0.0/24"}},
        ),
        ("manager", "govbus.discovery", "discovery.state", {}),
    ]
    for user, owner, method, params in cases:
        result, replies, reason = await forge_request(d, user, owner, method, params)
        assert result == "allowed" and not replies  # an answer would be there by now
        matrix.add(
            f"write a `{method}` request into govbus.rpc.{owner.removeprefix('govbus.')} "
            "through amq.default",
            user,
            f"never answered, dead-lettered (`{reason}`)",
        )
    with pytest.raises(NotFound):
        await d.admin.call("manager.resource", {"name": "forged-net"})
    for service in ("discovery", "manager"):
        request = forged(f"{service}.state", {}, correlation_id="f2")
        result = await attempt(d.node, "edge", publish("", f"govbus.rpc.{service}", request))
        matrix.add(f"write a request into govbus.rpc.{service} through amq.default", "edge", result)
        assert result == REFUSED


async def forge_request(
    d: Deployment, user: str, owner: str, method: str, params: dict[str, Any]
) -> tuple[str, list[Any], str]:
    """As `user`, write a request into the RPC queue of `owner` (a worker queue's name) by
    name, asking for a direct reply; wait until the worker dead-letters it."""
    replies: list[Any] = []
    request = forged(method, params, reply_to="amq.rabbitmq.reply-to", correlation_id="f1")
    reason = ""

    async def op(channel: aio_pika.abc.AbstractChannel) -> None:
        nonlocal reason
        inbox = await channel.get_queue("amq.rabbitmq.reply-to", ensure=False)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            replies.append(message)

        await inbox.consume(on_reply, no_ack=True)
        rpc_queue = "govbus.rpc." + owner.removeprefix("govbus.")
        await channel.default_exchange.publish(request, routing_key=rpc_queue)
        reason = await d.refused(owner, request.message_id)

    result = await attempt(d.node, user, op)
    return result, replies, reason


async def dead_letter_exchange(d: Deployment, matrix: Matrix) -> None:
    others = {"discovery": "govbus.manager", "manager": "govbus.discovery", "edge": None}
    for user, key in others.items():
        for target in [key] if key else ["govbus.discovery", "govbus.manager"]:
            message = forged("registry.register", {})
            result = await attempt(d.node, user, publish("govbus.dlx", target, message))
            matrix.add(f"publish to govbus.dlx with key {target}", user, result)
            assert result == REFUSED
            assert d.dead_letter(target, message.message_id) is None
            if key is not None:
                own = "govbus.discovery" if user == "discovery" else "govbus.manager"
                result = await attempt(d.node, user, bind(f"{own}.dlq", "govbus.dlx", target))
                matrix.add(f"bind its own queue to govbus.dlx with key {target}", user, result)
                assert result == REFUSED


async def other_queues(d: Deployment, matrix: Matrix) -> None:
    ops = {
        "consume {}": consume,
        "declare {}": declare,
        "delete {}": delete,
        "bind {} to govbus.events with `#`": lambda q: bind(q, "govbus.events", "#"),
    }
    for user in COMPONENTS:
        for owner, queues in QUEUES.items():
            if owner == user:
                continue
            for queue in queues:
                for what, make in ops.items():
                    result = await attempt(d.node, user, make(queue))
                    matrix.add(what.format(queue), user, result)
                    assert result == REFUSED, (user, what, queue)
    for user in ("discovery", "manager"):
        result = await attempt(d.node, user, consume(d.sse.name))
        matrix.add("consume an edge event-stream queue (govbus.edge.sse.*)", user, result)
        assert result == REFUSED

    async def hijack(channel: aio_pika.abc.AbstractChannel) -> None:
        queue = await channel.declare_queue("govbus.edge.hijack", exclusive=True)
        await queue.bind("govbus.rpc", "discovery.pick")

    result = await attempt(d.node, "edge", hijack)
    matrix.add("bind a queue of its own to govbus.rpc (answer others' requests)", "edge", result)
    assert result == REFUSED


async def writes_the_components_drop(d: Deployment, matrix: Matrix) -> None:
    """What amq.default still lets a worker write has no effect: nobody acts on it."""
    message = forged("registry.register", {"service": "web", "instance_id": "sse-forged"})
    result = await attempt(d.node, "discovery", publish("", d.sse.name, message))
    await eventually(lambda: d.sse.dropped == 1, what="the edge's tap to drop it")
    assert message.message_id not in {x.message.message_id for x in d.sse_seen}
    matrix.add(
        "write an event into an edge event-stream queue through amq.default",
        "discovery",
        f"{result} by the broker; dropped by the tap, never reaches an SSE client",
    )

    message = forged("resource.created", {})
    result = await attempt(d.node, "manager", publish("", LOG, message))
    stream: list[Delivery] = []
    tap = await d.admin.tap(["#"], stream.append, stream=LOG, offset="first")
    await eventually(lambda: tap.dropped == 1, what="record --from-start to drop it")
    assert message.message_id not in {x.message.message_id for x in stream}
    await tap.close()
    matrix.add(
        "write an event into the govbus.log stream through amq.default",
        "manager",
        f"{result} by the broker; dropped by every reader (`record --from-start`)",
    )

    message = forged("registry.register", {})
    result = await attempt(d.node, "manager", publish("", "govbus.discovery.dlq", message))
    await eventually(
        lambda: d.dead_letter("govbus.discovery", message.message_id), what="it to land"
    )
    d.planted = message.message_id
    matrix.add(
        "write into govbus.discovery.dlq through amq.default",
        "manager",
        f"{result} by the broker (known limit); no component reads a DLQ, and the entry shows "
        "exchange '' where a dead letter shows govbus.dlx",
    )


async def nothing_else_dead_lettered(d: Deployment) -> None:
    """Each DLQ entry is one of the forged messages, with the reason it was refused."""
    for queue, entries in d.dead.items():
        for entry in entries:
            if entry.message.message_id == d.planted:
                assert entry.exchange == ""
                continue
            assert entry.exchange == "govbus.dlx"
            assert str(entry.message.headers["x-govbus-error"]).startswith("refused: "), queue
