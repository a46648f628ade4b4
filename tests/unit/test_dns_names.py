"""The names of the DNS interface (`http_edge._dns_answer.Zone.parse`), as Consul's."""

from __future__ import annotations

import ipaddress

import dns.name
import pytest

from http_edge._dns_answer import AddrQuery, ServiceQuery, Zone


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("web.service.consul", ServiceQuery("web", None, srv_only=False)),
        ("WEB.Service.Consul.", ServiceQuery("web", None, srv_only=False)),
        ("web.service.dc1.consul", ServiceQuery("web", None, srv_only=False)),
        ("v2.web.service.consul", ServiceQuery("web", "v2", srv_only=False)),
        ("v2.web.service.dc1.consul", ServiceQuery("web", "v2", srv_only=False)),
        ("_web._tcp.service.consul", ServiceQuery("web", None, srv_only=True)),
        ("_web._v2.service.dc1.consul", ServiceQuery("web", "v2", srv_only=True)),
        ("7f000001.addr.dc1.consul", AddrQuery(ipaddress.ip_address("127.0.0.1"))),
        (
            "20010db8000000000000000000000001.addr.dc1.consul",
            AddrQuery(ipaddress.ip_address("2001:db8::1")),
        ),
        ("web.service.dc2.consul", None),  # another datacenter
        ("7f000001.addr.dc2.consul", None),
        ("7f0000zz.addr.dc1.consul", None),  # not hex
        ("7f00.addr.dc1.consul", None),
        ("a_b.service.consul", None),  # not a service name
        ("-a.service.consul", None),
        ("a.b.web.service.consul", None),
        ("service.consul", None),
        ("web.node.consul", None),
        ("web.service.example.com", None),  # outside the domain
        ("consul", None),  # the apex
    ],
)
def test_names(name, expected):
    assert Zone("consul", "dc1").parse(dns.name.from_text(name)) == expected


def test_domain_and_datacenter_from_settings():
    zone = Zone("Example.Internal", "East")
    assert zone.parse(dns.name.from_text("web.service.east.example.internal")) == ServiceQuery(
        "web", None, srv_only=False
    )
    assert zone.parse(dns.name.from_text("web.service.consul")) is None
