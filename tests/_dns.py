"""Asking the edge's DNS interface, as a DNS client does (dnspython): `ask(port, name, type)`."""

from __future__ import annotations

import dns.asyncquery
import dns.message
import dns.rdatatype
import dns.rrset


async def ask(
    port: int,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    edns: bool = True,
    host: str = "127.0.0.1",
) -> dns.message.Message:
    """The answer of the DNS server on `host:port` to `name` `rdtype` (over UDP, or TCP)."""
    query = dns.message.make_query(name, rdtype, use_edns=0 if edns else False)
    if tcp:
        return await dns.asyncquery.tcp(query, host, port=port, timeout=5)
    return await dns.asyncquery.udp(query, host, port=port, timeout=5, ignore_trailing=False)


def records(answer: dns.message.Message, rdtype: str, section: str = "answer") -> list[str]:
    """The records of type `rdtype` in a section, as text (`10.0.0.1`, `1 3 8000 x.addr...`)."""
    wanted = dns.rdatatype.from_text(rdtype)
    found: list[dns.rrset.RRset] = getattr(answer, section)
    return sorted(rd.to_text() for rrset in found if rrset.rdtype == wanted for rd in rrset)


def ttls(answer: dns.message.Message) -> set[int]:
    return {rrset.ttl for rrset in answer.answer}
