"""`GOVBUS_URL` listing the nodes of a cluster: connect to the first that answers; when that
node is lost, move to the next with every consumer and RPC server back.

Two TCP proxies in front of the local broker stand for two nodes: stopping one is, to the
client, exactly a node that died (its connection reset, new connections refused). The
three-node RabbitMQ cluster itself is in the fault suite (tests/faults/test_cluster.py).
"""

from __future__ import annotations

import socket

import pytest

from bus import Bus, Method
from bus.errors import BrokerUnreachable, ConfigError
from bus.message import EventMeta
from bus.settings import load_settings
from bus.transport.amqp import AmqpTransport
from schemas import EVENT_TYPES, Heartbeat
from tests._proxy import TcpProxy
from tests._wait import eventually

pytestmark = pytest.mark.rabbitmq


def closed_port() -> int:
    """A port on which nothing listens (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def node(port: int) -> str:
    return f"amqp://guest:guest@127.0.0.1:{port}/?heartbeat=2"


async def consumers(url: str, queue: str) -> int:
    async with Bus(url, source="observer") as observer:
        return (await observer.transport.queue_state(queue))[1]


async def test_the_first_node_that_answers_is_used(amqp_url):
    dead = closed_port()
    async with Bus(f"{node(dead)},{node(5672)}", source="node-list") as bus:
        assert isinstance(bus.transport, AmqpTransport)
        assert bus.transport.where == "amqp://127.0.0.1:5672/"


async def test_no_node_answering_names_every_node_and_no_password():
    first, second = closed_port(), closed_port()
    transport = AmqpTransport(f"{node(first)},{node(second)}", connect_timeout=1)
    with pytest.raises(BrokerUnreachable) as caught:
        await transport.connect()
    message = str(caught.value)
    assert f"127.0.0.1:{first}" in message and f"127.0.0.1:{second}" in message
    assert "guest:guest" not in message


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("amqp://guest:guest@a:5672/,memory://", "amqp:// or amqps://"),
        ("amqp://guest:guest@a:5672/,,amqp://guest:guest@b:5672/", "empty node URL"),
        ("amqp://guest:guest@a:5672/,amqp://guest:guest@b:99999/", "bad port"),
    ],
)
def test_a_bad_node_list_is_a_clear_error(monkeypatch, value, says):
    monkeypatch.setenv("GOVBUS_URL", value)
    with pytest.raises(ConfigError, match="GOVBUS_URL") as caught:
        AmqpTransport(load_settings().bus_url(embedded=False))
    assert says in str(caught.value)


async def test_losing_its_node_moves_to_the_next_with_consumers_and_rpc(amqp_url, unique):
    queue = f"{unique}.w"
    seen: list[str] = []

    async def on_heartbeat(event: Heartbeat, meta: EventMeta) -> None:
        seen.append(event.note)

    async def echo(req: Heartbeat) -> dict[str, str]:
        return {"note": req.note}

    async with TcpProxy("127.0.0.1", 5672) as a, TcpProxy("127.0.0.1", 5672) as b:
        worker = Bus(f"{node(a.port)},{node(b.port)}", source="node-list")
        await worker.start()
        try:
            await worker.subscribe(
                queue, ["registry.heartbeat"], {"registry.heartbeat": on_heartbeat}, EVENT_TYPES
            )
            await worker.serve(queue, {f"{queue}.echo": Method(Heartbeat, echo)})
            assert isinstance(worker.transport, AmqpTransport)
            assert worker.transport.where == f"amqp://127.0.0.1:{a.port}/"
            assert (a.connections, b.connections) == (1, 0)

            async with Bus(amqp_url, source="client") as client:
                await client.publish(Heartbeat(service="web", instance_id="w1", note="before"))
                await eventually(lambda: seen == ["before"])

                await a.stop()  # node a dies: its connection reset, new ones refused
                await client.publish(Heartbeat(service="web", instance_id="w1", note="during"))
                await eventually(
                    lambda: worker.transport.reconnects == 1, timeout=10, what="reconnect"
                )
                await eventually(lambda: worker.ready, timeout=5, what="worker ready")
                assert worker.transport.where == f"amqp://127.0.0.1:{b.port}/"
                assert b.connections == 1
                assert await consumers(amqp_url, queue) == 1
                await client.publish(Heartbeat(service="web", instance_id="w1", note="after"))
                await eventually(lambda: seen == ["before", "during", "after"], timeout=10)
                reply = await client.call(
                    f"{queue}.echo", {"service": "web", "instance_id": "w1", "note": "rpc"}
                )
                assert reply == {"note": "rpc"}
        finally:
            await worker.close()
            async with Bus(amqp_url, source="cleanup") as cleanup:
                await cleanup.transport.delete_queue(queue)
                await cleanup.transport.delete_queue(f"{queue}.dlq")
