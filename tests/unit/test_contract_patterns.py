"""The patterns the contract publishes admit only what the validators accept, and enough of it.

Property tests (hypothesis, derandomized): values drawn from a published pattern pass the
validator; values the server itself produces match what it publishes for its answers.
"""

from __future__ import annotations

import ipaddress
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from http_edge.models import IfMatch, if_match_version
from schemas import Address, Network, NetworkSpec, Register, Tag
from schemas._patterns import HOSTNAME, NETWORK_SYNTAX, ipv4_networks, ipv6_networks, numbers

PROPERTY = settings(max_examples=100, deadline=None, database=None, derandomize=True)
REGISTER = {"service": "web", "instance_id": "web-1", "port": 80}
STORED = {
    "id": "6f9619ff-8b86-d011-b42d-00c04fc964ff",
    "status": "active",
    "version": 1,
    "created_at": "2024-05-01T12:00:00Z",
    "updated_at": "2024-05-01T12:00:00Z",
}


def drawn(pattern: str) -> st.SearchStrategy[str]:
    """Strings matching `pattern` (hypothesis skips negative lookaheads: filter on them)."""
    compiled = re.compile(pattern)
    return st.from_regex(compiled, fullmatch=True).filter(compiled.fullmatch)


def published(model, field: str, mode: str = "validation") -> dict:
    return model.model_json_schema(mode=mode)["properties"][field]


def test_numbers_matches_exactly_its_set():
    for values in ({0}, {0, 128}, set(range(0, 256, 4)), set(range(0, 256, 2)), {7, 70, 255}):
        regex = re.compile(numbers(values))
        assert {n for n in range(1000) if regex.fullmatch(str(n))} == values
        assert not regex.fullmatch("00") and not regex.fullmatch("")


@PROPERTY
@given(drawn(ipv4_networks()))
def test_every_published_ipv4_network_is_accepted(cidr):
    assert NetworkSpec(name="n", cidr=cidr).cidr == cidr


@PROPERTY
@given(drawn(ipv6_networks()))
def test_every_published_ipv6_network_is_accepted(cidr):
    assert NetworkSpec(name="n", cidr=cidr).cidr == str(ipaddress.ip_network(cidr))


@PROPERTY
@given(
    st.integers(0, 2**32 - 1), st.integers(0, 32), st.integers(0, 2**128 - 1), st.integers(0, 128)
)
def test_every_network_has_a_published_spelling_and_its_answer_matches(a4, p4, a6, p6):
    v4 = ipaddress.IPv4Network((a4 >> (32 - p4) << (32 - p4), p4))
    v6 = ipaddress.IPv6Network((a6 >> (128 - p6) << (128 - p6), p6))
    groups = [g.lstrip("0") or "0" for g in v6.network_address.exploded.split(":")]
    needed = (p6 + 15) // 16
    leading = ":".join(groups[:needed]) + ("::" if needed < 8 else "")
    assert re.fullmatch(ipv4_networks(), str(v4))
    assert re.fullmatch(ipv6_networks(), f"{leading or '::'}/{p6}")
    # what the manager answers (normalised) matches what it publishes for answers
    answer = re.compile(published(Network, "cidr", "serialization")["pattern"])
    stored = Network(kind="network", name="n", cidr=str(v6), **STORED)
    assert answer.search(str(v4)) and answer.search(stored.cidr)


@pytest.mark.parametrize("cidr", ["", "10.0.0.1/24", "10.0.0.0/33", "2001:db8::1/32", "::/129"])
def test_networks_refused_are_not_published(cidr):
    request = re.compile(published(NetworkSpec, "cidr")["pattern"])
    assert not request.search(cidr)
    with pytest.raises(ValidationError):
        NetworkSpec(name="n", cidr=cidr)


@PROPERTY
@given(drawn(HOSTNAME).filter(lambda h: len(h) <= 253))
def test_every_published_hostname_is_accepted(host):
    assert Register.model_validate({**REGISTER, "address": host}).address == host


@PROPERTY
@given(st.ip_addresses())
def test_every_ip_address_is_accepted(address):
    assert Register.model_validate({**REGISTER, "address": str(address)})


@pytest.mark.parametrize("address", ["0", "10.0.0", "999.1.1.1", "host.123", "fe80::1%eth0", ""])
def test_addresses_refused_are_not_published(address):
    branches = published(Register, "address")["anyOf"]
    hostname = next(b for b in branches if "pattern" in b)
    assert not re.search(hostname["pattern"], address)
    with pytest.raises(ValidationError):
        TypeAdapter(Address).validate_python(address)


@PROPERTY
@given(drawn(published(Register, "tags")["items"]["pattern"]).filter(lambda t: len(t) <= 64))
def test_every_published_tag_is_accepted(tag):
    assert TypeAdapter(Tag).validate_python(tag) == tag


IF_MATCH = TypeAdapter(IfMatch)


@PROPERTY
@given(drawn(IF_MATCH.json_schema()["pattern"]))
def test_every_published_if_match_is_accepted(header):
    version = if_match_version(IF_MATCH.validate_python(header))
    assert version is None or 1 <= version < 2**63


@pytest.mark.parametrize("header", ["0", '"0"', "nope", '"3', "²", '"1234567890123456789"'])
def test_if_match_refused_is_not_published(header):
    assert not re.search(IF_MATCH.json_schema()["pattern"], header)
    with pytest.raises(ValidationError):
        IF_MATCH.validate_python(header)


def test_network_syntax_is_what_normalised_networks_look_like():
    for text in ("::/0", "::ffff:0:0/96", "2001:db8::/32", "0.0.0.0/0", "10.0.0.0/8"):
        assert re.fullmatch(NETWORK_SYNTAX, str(ipaddress.ip_network(text)))
