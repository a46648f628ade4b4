"""What the DNS interface answers, as Consul's DNS does: names to look up and the records of an
answer, built with dnspython (no hand-made wire format). `http_edge.dns` serves them.

Names (case-insensitive; `.<datacenter>` may follow `service` and is then checked):

- `<service>.service.<domain>`: A (AAAA for IPv6 addresses, CNAME for a hostname) and SRV;
- `<tag>.<service>.service.<domain>`: the same, for the instances with that tag;
- `_<service>._<tag>.service.<domain>` (RFC 2782; `_tcp` means any tag): SRV;
- `<hex address>.addr.<datacenter>.<domain>`: the A (or AAAA) record of an SRV target.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.SOA import SOA
from dns.rdtypes.IN.A import A
from dns.rdtypes.IN.AAAA import AAAA
from dns.rdtypes.IN.SRV import SRV

from schemas.registry import Instance

__all__ = ["AddrQuery", "ServiceQuery", "Zone", "healthy"]

IN = dns.rdataclass.IN
SERVICE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # schemas' ServiceName
SRV_PRIORITY = 1
MAX_SRV_WEIGHT = 65_535
SERVING = frozenset({"passing", "warning"})


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """A name of a service: its instances (with `tag`, if given)."""

    service: str
    tag: str | None
    srv_only: bool  # the RFC 2782 form


@dataclass(frozen=True, slots=True)
class AddrQuery:
    """`<hex>.addr.<dc>.<domain>`: an SRV target, the address it encodes."""

    address: ipaddress.IPv4Address | ipaddress.IPv6Address


def healthy(instances: Iterable[Instance], tag: str | None) -> list[Instance]:
    """The instances DNS shows (passing or warning; with `tag`), shuffled."""
    chosen = [i for i in instances if i.status in SERVING and (tag is None or tag in i.tags)]
    random.shuffle(chosen)
    return chosen


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


class Zone:
    """The names under `<domain>.` of datacenter `datacenter`, and the records answering them."""

    def __init__(self, domain: str, datacenter: str, *, ttl: int = 0) -> None:
        self.origin = dns.name.from_text(domain.lower())
        self.datacenter = datacenter.lower()
        self.ttl = ttl
        self._addr_origin = dns.name.from_text(f"addr.{self.datacenter}", origin=self.origin)
        self._soa = dns.rrset.from_rdata(
            self.origin,
            ttl,
            SOA(
                IN,
                dns.rdatatype.SOA,
                dns.name.from_text("ns", origin=self.origin),
                dns.name.from_text("hostmaster", origin=self.origin),
                1,
                3600,
                600,
                86_400,
                0,
            ),
        )

    def parse(self, qname: dns.name.Name) -> ServiceQuery | AddrQuery | None:
        """What `qname` asks for; None for a name this zone does not have."""
        if not qname.is_subdomain(self.origin) or qname == self.origin:
            return None
        labels = [
            label.decode("ascii", "replace").lower()
            for label in qname.relativize(self.origin).labels
        ]
        if len(labels) == 3 and labels[1:] == ["addr", self.datacenter]:
            return _addr(labels[0])
        if len(labels) >= 3 and labels[-1] == self.datacenter and labels[-2] == "service":
            labels = labels[:-1]
        if len(labels) < 2 or labels[-1] != "service":
            return None
        head = labels[:-1]
        if len(head) == 2 and head[0].startswith("_") and head[1].startswith("_"):
            service, tag = head[0][1:], head[1][1:]
            query = ServiceQuery(service, None if tag == "tcp" else tag, srv_only=True)
        elif len(head) == 1:
            query = ServiceQuery(head[0], None, srv_only=False)
        elif len(head) == 2:
            query = ServiceQuery(head[1], head[0], srv_only=False)
        else:
            return None
        # a name no service can have is not asked of the registry
        return query if SERVICE_NAME.fullmatch(query.service) else None

    def is_apex(self, qname: dns.name.Name) -> bool:
        return bool(qname == self.origin)

    def target(self, instance: Instance) -> dns.name.Name:
        """The SRV target of an instance: `<hex ip>.addr.<dc>.<domain>.`, or its hostname."""
        ip = _ip(instance.address)
        if ip is None:
            return dns.name.from_text(instance.address)
        return dns.name.from_text(ip.packed.hex(), origin=self._addr_origin)

    def soa(self, response: dns.message.Message) -> None:
        response.authority.append(self._soa)

    def apex(self, response: dns.message.Message, qtype: int) -> None:
        """The domain itself: its SOA, nothing else."""
        if qtype in (dns.rdatatype.SOA, dns.rdatatype.ANY):
            response.answer.append(self._soa)
        else:
            self.soa(response)

    def addresses(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: int,
        instances: Sequence[Instance],
    ) -> None:
        """A/AAAA records of `instances` (CNAME for a hostname: the first one, as Consul).

        One record per RRset object: on the wire it is the same, and an answer too large for
        the client can then be cut between any two records (`http_edge.dns`)."""
        a: list[dns.rrset.RRset] = []
        aaaa: list[dns.rrset.RRset] = []
        cname: dns.rrset.RRset | None = None
        seen: set[str] = set()
        for instance in instances:
            ip = _ip(instance.address)
            if ip is None:
                if cname is None:
                    target = dns.name.from_text(instance.address)
                    cname = self._rrset(qname, CNAME(IN, dns.rdatatype.CNAME, target))
                continue
            text = str(ip)
            if text in seen:
                continue  # one record per address
            seen.add(text)
            if ip.version == 4:
                a.append(self._rrset(qname, A(IN, dns.rdatatype.A, text)))
            else:
                aaaa.append(self._rrset(qname, AAAA(IN, dns.rdatatype.AAAA, text)))
        if qtype in (dns.rdatatype.A, dns.rdatatype.ANY):
            response.answer.extend(a)
        if qtype in (dns.rdatatype.AAAA, dns.rdatatype.ANY):
            response.answer.extend(aaaa)
        if not response.answer and cname is not None:
            response.answer.append(cname)
        if not response.answer:
            self.soa(response)  # the name exists, not with this type (NODATA)

    def services(
        self, response: dns.message.Message, qname: dns.name.Name, instances: Sequence[Instance]
    ) -> None:
        """SRV records of `instances` (one per RRset object, as `addresses`), their targets'
        addresses in the additional section."""
        targets: set[dns.name.Name] = set()
        for instance in instances:
            target = self.target(instance)
            weight = min(max(int(instance.weight), 0), MAX_SRV_WEIGHT)
            srv = SRV(IN, dns.rdatatype.SRV, SRV_PRIORITY, weight, instance.port, target)
            response.answer.append(self._rrset(qname, srv))
            ip = _ip(instance.address)
            if ip is not None and target not in targets:
                targets.add(target)
                rdtype = dns.rdatatype.A if ip.version == 4 else dns.rdatatype.AAAA
                rdata = (A if ip.version == 4 else AAAA)(IN, rdtype, str(ip))
                response.additional.append(self._rrset(target, rdata))

    def _rrset(self, name: dns.name.Name, rdata: dns.rdata.Rdata) -> dns.rrset.RRset:
        return dns.rrset.from_rdata(name, self.ttl, rdata)

    def addr(
        self, response: dns.message.Message, qname: dns.name.Name, qtype: int, query: AddrQuery
    ) -> None:
        """The address an `addr` name encodes."""
        rdtype = dns.rdatatype.A if query.address.version == 4 else dns.rdatatype.AAAA
        if qtype in (rdtype, dns.rdatatype.ANY):
            rdata = (A if rdtype == dns.rdatatype.A else AAAA)(IN, rdtype, str(query.address))
            response.answer.append(dns.rrset.from_rdata(qname, self.ttl, rdata))
        else:
            self.soa(response)


def _addr(label: str) -> AddrQuery | None:
    if len(label) not in (8, 32):
        return None
    try:
        packed = bytes.fromhex(label)
    except ValueError:
        return None
    return AddrQuery(ipaddress.ip_address(packed))


def nxdomain(zone: Zone, response: dns.message.Message) -> dns.message.Message:
    response.set_rcode(dns.rcode.NXDOMAIN)
    zone.soa(response)
    response.flags |= dns.flags.AA
    return response
