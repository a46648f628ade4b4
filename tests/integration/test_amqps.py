"""`amqps://` with `cafile`, `certfile`, `keyfile`: a private RabbitMQ node with a TLS listener
that wants a client certificate, both signed by a CA this test makes."""

from __future__ import annotations

import asyncio
import atexit
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from bus import Bus, Method
from bus.errors import BrokerUnreachable, ConfigError
from bus.message import EventMeta
from schemas import Register
from tests._certs import Issued, TestCA
from tests._rabbit_node import PrivateRabbit
from tests._wait import eventually

# `faults`: it starts a private node, like the fault suite (the marker checks the package).
pytestmark = pytest.mark.faults


class Ping(BaseModel):
    n: int


class Tls:
    def __init__(self, node: PrivateRabbit, ca: TestCA, client: Issued, other_ca: TestCA) -> None:
        self.node, self.ca, self.client, self.other_ca = node, ca, client, other_ca

    def url(self, **query: str) -> str:
        return self.node.tls_url(**query)

    def good_url(self) -> str:
        return self.url(
            cafile=str(self.ca.cert), certfile=str(self.client.cert), keyfile=str(self.client.key)
        )


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> Iterator[Tls]:
    folder: Path = tmp_path_factory.mktemp("amqps")
    ca = TestCA(folder / "ca")
    server = ca.issue("rabbit")
    node = PrivateRabbit(tls=(ca.cert, server.cert, server.key))
    atexit.register(node.stop)
    try:
        node.start()
        yield Tls(node, ca, ca.issue("govbus-client", client=True), TestCA(folder / "other"))
    finally:
        node.stop()
        atexit.unregister(node.stop)


async def test_publish_consume_and_rpc_over_amqps(tls, unique):
    url = tls.good_url()
    seen: list[Register] = []

    async def on_register(event: Register, meta: EventMeta) -> None:
        seen.append(event)

    async def double(request: Ping) -> dict[str, int]:
        return {"n": request.n * 2}

    async with Bus(url, source="amqps-worker") as worker, Bus(url, source="amqps-client") as client:
        await worker.subscribe(
            f"{unique}.w",
            ["registry.register"],
            {"registry.register": on_register},
            {"registry.register": Register},
        )
        await worker.serve(unique, {f"{unique}.double": Method(Ping, double)})
        await client.publish(
            Register(service="web", instance_id=f"{unique}-1", address="10.0.0.1", port=80)
        )
        await eventually(lambda: seen, timeout=10, what="the event over amqps")
        assert seen[0].instance_id == f"{unique}-1"
        assert await client.call(f"{unique}.double", {"n": 21}, timeout=5) == {"n": 42}
        assert client.transport.is_connected


async def test_a_broker_signed_by_another_ca_is_a_clear_tls_error(tls):
    url = tls.url(
        cafile=str(tls.other_ca.cert), certfile=str(tls.client.cert), keyfile=str(tls.client.key)
    )
    bus = Bus(url, source="amqps-wrong-ca")
    with pytest.raises(BrokerUnreachable) as caught:
        await asyncio.wait_for(bus.start(), 15)  # an error, not a hang
    message = str(caught.value)
    assert "TLS" in message and "not trusted" in message, message
    assert "guest:guest" not in message and "\n" not in message
    await bus.close()


async def test_no_client_certificate_is_refused_by_the_broker(tls):
    bus = Bus(tls.url(cafile=str(tls.ca.cert)), source="amqps-no-client-cert")
    with pytest.raises(BrokerUnreachable) as caught:
        await asyncio.wait_for(bus.start(), 15)
    await bus.close()
    message = str(caught.value)
    assert message.startswith(f"cannot reach the broker at amqps://127.0.0.1:{tls.node.tls_port}/")
    # the broker's alert (CERTIFICATE_REQUIRED) or, when it loses the race, a hint
    assert "CERTIFICATE_REQUIRED" in message or "client certificate" in message, message


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({"cafile": "/nonexistent/ca.pem"}, "cafile /nonexistent/ca.pem: cannot read it"),
        ({"certfile": "/nonexistent/c.pem", "keyfile": "/nonexistent/k.pem"}, "certfile"),
        ({"cafile": "JUNK"}, "holds no usable CA certificate"),
        ({"keyfile": "KEY"}, "keyfile needs certfile"),
        ({"certfile": "CLIENT", "keyfile": "OTHER_KEY"}, "is not the key of certfile"),
    ],
)
async def test_bad_tls_files_are_one_config_error_naming_govbus_url(tls, tmp_path, query, needle):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    other_key = tls.ca.issue("someone-else", client=True).key
    files = {
        "JUNK": str(junk),
        "KEY": str(tls.client.key),
        "CLIENT": str(tls.client.cert),
        "OTHER_KEY": str(other_key),
    }
    url = tls.url(**{k: files.get(v, v) for k, v in query.items()})
    with pytest.raises(ConfigError) as caught:
        bus = Bus(url, source="amqps-bad")  # parameter checks: at once
        await bus.start()  # file checks: before any connection is tried
    message = str(caught.value)
    assert message.startswith("GOVBUS_URL: ") and needle in message, message
    assert "guest" not in message and "\n" not in message


def test_tls_parameters_on_plain_amqp_are_refused():
    with pytest.raises(ConfigError, match=r"GOVBUS_URL: cafile is for TLS: use amqps://"):
        Bus("amqp://guest:guest@127.0.0.1:5672/?cafile=/etc/ssl/ca.pem", source="x")
