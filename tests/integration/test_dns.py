"""The edge's DNS interface (Consul's names) through real workers, asked by a DNS client
(dnspython) over UDP and TCP: every name form, statuses, tags, NXDOMAIN, truncation, and
malformed packets the server survives."""

from __future__ import annotations

import asyncio
import random
import socket

import dns.flags
import dns.message
import dns.rcode
import pytest

from tests._dns import ask, records, ttls
from tests._edge_stack import BOTH, Stack, bus_url, edge_stack
from tests._wait import eventually

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=BOTH)
async def both_stack(request, tmp_path, unique):
    """The edge with DNS on a free port, on the embedded bus and on RabbitMQ."""
    async with edge_stack(bus_url(request, unique), tmp_path, dns="127.0.0.1:0") as s:
        yield s


@pytest.fixture
async def stack(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path, dns="127.0.0.1:0") as s:
        yield s


def port_of(stack: Stack) -> int:
    return int(stack.app.extensions["govbus.dns"].port)


async def register(stack: Stack, service: str, instance_id: str, address: str, port: int, **extra):
    body = {"service": service, "instance_id": instance_id, "address": address, "port": port}
    r = await stack.client.post("/v1/instances", headers=stack.headers, json={**body, **extra})
    assert r.status_code == 202, await r.get_data()


async def settled(port: int, name: str, rdtype: str, expected: list[str]) -> dns.message.Message:
    """The answer once it shows `expected` (the registry event reaches the cache at once, the
    worker's write a moment before)."""

    async def shown():
        answer = await ask(port, name, rdtype)
        return answer if records(answer, rdtype) == expected else None

    return await eventually(shown, interval=0.01, what=f"{name} {rdtype} to be {expected}")


async def test_every_name_form_answers_from_the_registry(both_stack):
    port = port_of(both_stack)
    await register(both_stack, "web", "web-1", "10.0.0.1", 8000, tags=["blue"], weight=3)
    await register(both_stack, "web", "web-2", "10.0.0.2", 8001)
    a = await settled(port, "web.service.consul", "A", ["10.0.0.1", "10.0.0.2"])
    assert a.rcode() == dns.rcode.NOERROR and a.flags & dns.flags.AA and ttls(a) == {0}

    # case-insensitive, with the datacenter, over TCP
    assert records(await ask(port, "WEB.Service.CONSUL", "A"), "A") == ["10.0.0.1", "10.0.0.2"]
    srv = await ask(port, "web.service.dc1.consul", "SRV", tcp=True)
    assert records(srv, "SRV") == [
        "1 1 8001 0a000002.addr.dc1.consul.",
        "1 3 8000 0a000001.addr.dc1.consul.",
    ]
    assert records(srv, "A", "additional") == ["10.0.0.1", "10.0.0.2"]

    # RFC 2782: _<service>._tcp, the targets' addresses in the additional section
    rfc = await ask(port, "_web._tcp.service.consul", "SRV")
    assert len(records(rfc, "SRV")) == 2
    assert {rrset.name.to_text() for rrset in rfc.additional if rrset.rdtype == 1} == {
        "0a000001.addr.dc1.consul.",
        "0a000002.addr.dc1.consul.",
    }
    # a tag: only the instances with it, in both forms
    assert records(await ask(port, "blue.web.service.consul", "A"), "A") == ["10.0.0.1"]
    assert records(await ask(port, "_web._blue.service.consul", "SRV"), "SRV") == [
        "1 3 8000 0a000001.addr.dc1.consul."
    ]
    # an SRV target resolves
    assert records(await ask(port, "0a000002.addr.dc1.consul", "A"), "A") == ["10.0.0.2"]

    # unknown names: NXDOMAIN with the zone's SOA in authority
    for name in (
        "nope.service.consul",
        "web.service.dc2.consul",
        "red.web.service.consul",
        "web.node.consul",
        "example.com",
        "a_b.service.consul",  # no service can have these names: not asked of the registry
        "-web.service.consul",
        "x.y.web.service.consul",
        "_web._tcp.service.consul.example.com",
    ):
        answer = await ask(port, name, "A")
        assert answer.rcode() == dns.rcode.NXDOMAIN, name
        assert records(answer, "SOA", "authority") == [
            "ns.consul. hostmaster.consul. 1 3600 600 86400 0"
        ], name


async def test_only_passing_and_warning_instances_shuffled(stack):
    port = port_of(stack)
    c, h = stack.client, stack.headers
    for n in range(1, 5):
        await register(stack, "api", f"api-{n}", f"10.0.1.{n}", 9000 + n)
    await settled(port, "api.service.consul", "A", [f"10.0.1.{n}" for n in range(1, 5)])
    await c.put("/v1/instances/api-2/heartbeat", headers=h, json={"status": "warning"})
    await c.put("/v1/instances/api-3/heartbeat", headers=h, json={"status": "critical"})
    await c.put("/v1/instances/api-4/drain", headers=h)
    await settled(port, "api.service.consul", "A", ["10.0.1.1", "10.0.1.2"])
    srv = await ask(port, "api.service.consul", "SRV")
    assert records(srv, "SRV") == [
        "1 1 9001 0a000101.addr.dc1.consul.",
        "1 1 9002 0a000102.addr.dc1.consul.",
    ]
    orders = set()

    async def both_orders():
        answer = await ask(port, "api.service.consul", "A")
        orders.add(tuple(rd.to_text() for rd in answer.answer[0]))
        return len(orders) == 2

    await eventually(both_orders, interval=0.001, what="answers in both orders (shuffled)")

    # every instance critical: no name, as Consul
    await c.put("/v1/instances/api-1/heartbeat", headers=h, json={"status": "critical"})
    await c.put("/v1/instances/api-2/heartbeat", headers=h, json={"status": "critical"})

    async def gone():
        return (await ask(port, "api.service.consul", "A")).rcode() == dns.rcode.NXDOMAIN

    await eventually(gone, interval=0.01, what="api to be NXDOMAIN")


async def test_ipv6_and_hostname_addresses(stack):
    port = port_of(stack)
    await register(stack, "v6", "v6-1", "2001:db8::1", 80)
    await register(stack, "named", "named-1", "db.example.org", 5432)
    await settled(port, "v6.service.consul", "AAAA", ["2001:db8::1"])
    v6 = await ask(port, "v6.service.consul", "A")  # the name exists, not with an A: NODATA
    assert v6.rcode() == dns.rcode.NOERROR and not v6.answer and v6.authority
    srv = await ask(port, "_v6._tcp.service.consul", "SRV")
    target = "20010db8000000000000000000000001.addr.dc1.consul."
    assert records(srv, "SRV") == [f"1 1 80 {target}"]
    assert records(srv, "AAAA", "additional") == ["2001:db8::1"]
    assert records(await ask(port, target, "AAAA"), "AAAA") == ["2001:db8::1"]

    await settled(port, "named.service.consul", "CNAME", ["db.example.org."])
    assert records(await ask(port, "named.service.consul", "A"), "CNAME") == ["db.example.org."]
    assert records(await ask(port, "named.service.consul", "SRV"), "SRV") == [
        "1 1 5432 db.example.org."
    ]


async def test_a_large_udp_answer_is_truncated_and_whole_over_tcp(stack):
    port = port_of(stack)
    for n in range(40):
        await register(stack, "big", f"big-{n}", f"10.2.0.{n + 1}", 8000 + n)
    expected = sorted(f"10.2.0.{n + 1}" for n in range(40))
    await settled(port, "big.service.consul", "A", expected)  # EDNS: fits
    plain = await ask(port, "big.service.consul", "SRV", edns=False)
    assert plain.flags & dns.flags.TC and len(plain.to_wire()) <= 512
    whole = await ask(port, "big.service.consul", "SRV", tcp=True)
    assert not whole.flags & dns.flags.TC and len(records(whole, "SRV")) == 40
    assert len(records(whole, "A", "additional")) == 40


async def test_malformed_packets_never_stop_the_server(stack):
    port = port_of(stack)
    await register(stack, "web", "web-1", "10.0.0.1", 8000)
    await settled(port, "web.service.consul", "A", ["10.0.0.1"])
    loop = asyncio.get_running_loop()
    good = dns.message.make_query("web.service.consul", "A")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.setblocking(False)
        target = ("127.0.0.1", port)
        # a header that reads, then a broken name: FORMERR with the query's id
        await loop.sock_sendto(udp, bytes.fromhex("123401000001000000000000") + b"\x3fabc", target)
        reply = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(udp, 4096), 5))
        assert reply.id == 0x1234 and reply.rcode() == dns.rcode.FORMERR
        # random bytes, truncated headers, an empty datagram, an answer instead of a query
        noise = random.Random(12)
        for size in (0, 1, 5, 11, 12, 13, 40, 300, 1200):
            await loop.sock_sendto(udp, noise.randbytes(size), target)
        await loop.sock_sendto(udp, dns.message.make_response(good).to_wire(), target)
        await loop.sock_sendto(udp, good.to_wire(), target)

        async def answered():
            while True:
                reply = await loop.sock_recv(udp, 4096)
                try:
                    message = dns.message.from_wire(reply)
                except Exception:
                    continue
                if message.id == good.id and message.answer:
                    return message

        message = await asyncio.wait_for(answered(), 5)
        assert records(message, "A") == ["10.0.0.1"]

    # TCP: the largest length a message may announce, its bytes garbage, then a good query on
    # the same connection; a connection that announces more than it sends; a tiny message
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\xff\xff" + bytes(12) + noise.randbytes(65_535 - 12))
    await writer.drain()
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5))
    assert dns.message.from_wire(await reader.readexactly(size)).rcode() == dns.rcode.FORMERR
    wire = good.to_wire()
    writer.write(len(wire).to_bytes(2, "big") + wire)
    await writer.drain()
    size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), 5))
    assert records(dns.message.from_wire(await reader.readexactly(size)), "A") == ["10.0.0.1"]
    writer.close()
    await writer.wait_closed()
    for junk in (b"\xff\xff" + b"\x00" * 10, b"\x00\x03abc", b"\x00"):
        _, stray = await asyncio.open_connection("127.0.0.1", port)
        stray.write(junk)
        await stray.drain()
        stray.close()
        await stray.wait_closed()
    assert records(await ask(port, "web.service.consul", "A", tcp=True), "A") == ["10.0.0.1"]
    assert records(await ask(port, "web.service.consul", "A"), "A") == ["10.0.0.1"]
