"""The edge's DNS interface (`GOVBUS_DNS`), as Consul's: the registry read by name over UDP and
TCP on one address, answered from the edge's `RegistryCache` (no RPC per query under load).

`<service>.service.consul` A/SRV, `_<service>._tcp.service.consul` SRV with the targets'
addresses in the additional section, `<tag>.<service>.service.consul`; passing and warning
instances only, shuffled, TTL 0; anything else NXDOMAIN with the zone's SOA. The names are in
`http_edge._dns_answer`. A malformed query is answered FORMERR (or dropped when not even its
header can be read); nothing is logged per query. A UDP answer larger than the client accepts
(512 bytes without EDNS) is truncated and says so (TC): the client asks again over TCP.

dnspython takes ~0.7 ms to render 20 A records (~3.5 ms for 20 SRV and their addresses), so an
answer is rendered once per order: a question asked again (the same bytes but the id) about
the same instances is answered with one of up to `SHUFFLES` answers already rendered, each in
an order of its own, with the query's id; new orders replace them as long as rendering takes
under `RENDER_SHARE` of the time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
from quart import Quart

from bus.errors import BusError, ConfigError, NotFound
from bus.settings import Settings
from http_edge._dns_answer import AddrQuery, ServiceQuery, Zone, healthy, nxdomain
from http_edge.cache import RegistryCache
from schemas.rpc import ServiceView

log = logging.getLogger(__name__)

__all__ = ["DnsServer", "check_dns", "serve_dns"]

UDP_PLAIN = 512  # what a client without EDNS accepts
MAX_MESSAGE = 65_535
HEADER = 12
MAX_INFLIGHT = 4_096  # UDP queries being answered at once; past this, new ones are dropped
MAX_TCP = 512  # open TCP connections; past this, new ones are closed at once
SHUFFLES = 16  # answers kept per question and set of instances, in orders of their own
RENDER_INLINE = 100  # instances; an answer about more is rendered in a thread
MIN_RECORD_BYTES = 16  # an A record, its name compressed: no answer holds more than size/16
MIN_SRV_BYTES = 20  # an SRV record whose target is a pointer to one named before
RENDER_SHARE = 0.05  # of the time a question takes, at most this goes to new orders
MAX_RENDERED = 4_096  # questions whose rendered answers are kept (past this, all are dropped)
IDLE_S = 10.0  # a TCP connection quiet this long (or slow to send a message) is closed


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def check_dns(address: str) -> None:
    """Raise `ConfigError` naming GOVBUS_DNS if nothing can listen on `address` (UDP and TCP)."""
    host, port = _split(address)
    try:
        family = socket.getaddrinfo(host, port)[0][0]
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(family, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((host, port))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise ConfigError(
            f"GOVBUS_DNS: cannot listen on {address}: {reason} "
            "(set GOVBUS_DNS to another HOST:PORT, or to off)"
        ) from None


@dataclass(slots=True)
class _Rendered:
    """The answers rendered for one question about one set of instances."""

    answers: list[bytes] = field(default_factory=list)
    next_at: float = 0.0  # when a new order may be rendered


class DnsServer:
    """DNS on `address` (`host:port`; port 0: any free port, the same for UDP and TCP) from
    `start()` until `close()`, answering from `cache` for `domain` in `datacenter`."""

    def __init__(
        self,
        cache: RegistryCache,
        address: str,
        *,
        domain: str = "consul",
        datacenter: str = "dc1",
        ttl: int = 0,
    ) -> None:
        self.cache = cache
        self.address = address
        self.zone = Zone(domain, datacenter, ttl=ttl)
        self.host, self.port = _split(address)
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._rendered: dict[tuple[object, ...], _Rendered] = {}
        self._questions: dict[
            tuple[bytes, int | None], tuple[dns.message.Message, ServiceQuery]
        ] = {}
        self._views: dict[str, tuple[ServiceView, tuple[object, ...]]] = {}

    async def start(self) -> None:
        """Listen (UDP, then TCP on the same port). Raises `ConfigError` naming GOVBUS_DNS."""
        loop = asyncio.get_running_loop()
        for _ in range(20 if self.port == 0 else 1):
            try:
                self._udp, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(self.host, self.port)
                )
                port = self._udp.get_extra_info("sockname")[1]
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError as exc:
                if self._udp is not None:
                    self._udp.close()
                    self._udp = None
                if self.port != 0:
                    reason = exc.strerror or str(exc)
                    raise ConfigError(
                        f"GOVBUS_DNS: cannot listen on {self.address}: {reason}"
                    ) from None
                continue  # port 0: TCP's twin was taken, try another
            self.port = port
            return
        raise ConfigError(f"GOVBUS_DNS: no free port on {self.host} for both UDP and TCP")

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._writers):
                writer.close()
            self._tcp = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def answer(self, wire: bytes, *, limit: int | None = None) -> bytes | None:
        """The answer to the query `wire` (None: nothing to answer), at most `limit` bytes
        (UDP: the client's EDNS size or 512; None for TCP)."""
        # A question asked before (the same bytes but the id) about a service is not read again
        known = self._questions.get((wire[2:], limit))
        if known is None:
            query, parsed, answer = self._read(wire, limit)
            if query is None or parsed is None:
                return answer
            if len(self._questions) >= MAX_RENDERED:
                self._questions.clear()
            known = self._questions[(wire[2:], limit)] = (query, parsed)
        query, parsed = known
        size = _limit(query, limit)
        try:
            view = await self.cache.service(parsed.service)
        except NotFound:
            return _fit(nxdomain(self.zone, _response(query, wire)), size)
        except BusError:
            response = _response(query, wire)
            response.set_rcode(dns.rcode.SERVFAIL)  # no worker answered: not "no such name"
            return response.to_wire()
        # the same question about the same instances: one of the answers already rendered (by
        # dnspython), each in an order of its own, with this query's id; a new order replaces
        # one of them when rendering has had its share of time (RENDER_SHARE)
        key = (wire[2:], limit, self._fingerprint(view))
        rendered = self._rendered.get(key)
        now = time.monotonic()
        if rendered is not None and now < rendered.next_at:
            return wire[:2] + random.choice(rendered.answers)[2:]
        response = _response(query, wire)
        if len(view.instances) > RENDER_INLINE:
            # a large answer takes dnspython milliseconds: the event loop keeps serving
            answer = await asyncio.to_thread(self._render, response, parsed, view, size)
        else:
            answer = self._render(response, parsed, view, size)
        took = time.monotonic() - now
        if rendered is None:
            if len(self._rendered) >= MAX_RENDERED:
                self._rendered.clear()
            rendered = self._rendered[key] = _Rendered()
        if len(rendered.answers) < SHUFFLES:
            rendered.answers.append(answer)
        else:
            rendered.answers[random.randrange(SHUFFLES)] = answer
        rendered.next_at = now + took / RENDER_SHARE
        return answer

    def _read(
        self, wire: bytes, limit: int | None
    ) -> tuple[dns.message.Message | None, ServiceQuery | None, bytes | None]:
        """The query in `wire` and the service it asks about; else (None, None, the answer)."""
        try:
            query = dns.message.from_wire(wire)
        except dns.message.ShortHeader:
            return None, None, None
        except Exception:  # any malformed message
            return None, None, _formerr(wire)
        if query.flags & dns.flags.QR:
            return None, None, None  # an answer, not a question: never answer it (no loops)
        response = _response(query, wire)
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return None, None, response.to_wire()
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return None, None, response.to_wire()
        question = query.question[0]
        parsed = self.zone.parse(question.name)
        if isinstance(parsed, ServiceQuery):
            return query, parsed, None
        self._answer_name(response, question.name, question.rdtype, parsed)
        return None, None, _fit(response, _limit(query, limit))

    def _fingerprint(self, view: ServiceView) -> tuple[object, ...]:
        """What of `view` an answer shows (the same object for the same view)."""
        seen = self._views.get(view.service)
        if seen is not None and seen[0] is view:
            return seen[1]
        fingerprint = tuple(
            (i.instance_id, i.address, i.port, i.weight, i.status, tuple(i.tags))
            for i in view.instances
        )
        if len(self._views) >= MAX_RENDERED:
            self._views.clear()
        self._views[view.service] = (view, fingerprint)
        return fingerprint

    def _answer_name(
        self,
        response: dns.message.Message,
        qname: dns.name.Name,
        qtype: int,
        parsed: AddrQuery | None,
    ) -> None:
        zone = self.zone
        if zone.is_apex(qname):
            zone.apex(response, qtype)
        elif parsed is None:
            nxdomain(zone, response)
        else:
            zone.addr(response, qname, qtype, parsed)

    def _render(
        self, response: dns.message.Message, parsed: ServiceQuery, view: ServiceView, size: int
    ) -> bytes:
        """The answer about `view`'s instances, in at most `size` bytes."""
        zone = self.zone
        qname, qtype = response.question[0].name, response.question[0].rdtype
        instances = healthy(view.instances, parsed.tag)
        most = size // (MIN_SRV_BYTES if qtype == dns.rdatatype.SRV else MIN_RECORD_BYTES)
        if len(instances) > most:  # more than could fit: not rendered only to be cut
            instances = instances[:most]
            response.flags |= dns.flags.TC
        if not instances:
            nxdomain(zone, response)  # as Consul: no healthy instance, no name
        elif qtype == dns.rdatatype.SRV:
            zone.services(response, qname, instances)
        elif parsed.srv_only:
            zone.soa(response)
        else:
            zone.addresses(response, qname, qtype, instances)
        return _fit(response, size)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_TCP:
            writer.close()
            return
        self._writers.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)  # close() waits for it
        try:
            while True:
                size = int.from_bytes(await asyncio.wait_for(reader.readexactly(2), IDLE_S))
                wire = await asyncio.wait_for(reader.readexactly(size), IDLE_S)
                try:
                    answer = await self.answer(wire)
                except Exception as exc:  # a bug must not stop the server answering others
                    _failed(exc)
                    return
                if answer is None:
                    if size < HEADER:
                        return  # not DNS: hang up
                    continue
                writer.write(len(answer).to_bytes(2, "big") + answer)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    def _on_datagram(self, wire: bytes, peer: tuple[str, int]) -> None:
        if len(self._tasks) >= MAX_INFLIGHT or self._udp is None:
            return
        task = asyncio.get_running_loop().create_task(self._answer_udp(self._udp, wire, peer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer_udp(
        self, transport: asyncio.DatagramTransport, wire: bytes, peer: tuple[str, int]
    ) -> None:
        try:
            answer = await self.answer(wire, limit=UDP_PLAIN)
        except Exception as exc:  # a bug must not stop the server answering others
            _failed(exc)
            return
        if answer is not None and not transport.is_closing():
            transport.sendto(answer, peer)


def serve_dns(app: Quart, cache: RegistryCache, address: str, settings: Settings) -> DnsServer:
    """A `DnsServer` on `address` answering from `cache` while `app` serves, as
    `app.extensions["govbus.dns"]`: started after the `before_serving` hooks registered before
    this call, stopped before the `after_serving` hooks registered after it."""
    server = DnsServer(cache, address, domain=settings.dns_domain, datacenter=settings.datacenter)
    app.extensions["govbus.dns"] = server
    app.before_serving(server.start)
    app.after_serving(server.close)
    return server


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.server._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # an ICMP error for an answer already sent: the client went away


def _failed(exc: Exception) -> None:
    log.error("DNS answer failed: %s: %s", type(exc).__name__, exc)
    log.debug("DNS failure", exc_info=exc)


def _response(query: dns.message.Message, wire: bytes) -> dns.message.Message:
    """The answer to `query` asked again as `wire` (the same question, its own id)."""
    response = dns.message.make_response(query)
    response.id = int.from_bytes(wire[:2], "big")
    response.flags |= dns.flags.AA
    return response


def _limit(query: dns.message.Message, limit: int | None) -> int:
    """How large an answer may be: `limit` (UDP: 512), or what the client's EDNS says."""
    if limit is None:
        return MAX_MESSAGE
    if query.edns >= 0:
        return max(limit, min(query.payload, MAX_MESSAGE))
    return limit


def _formerr(wire: bytes) -> bytes | None:
    """FORMERR for a query whose header can be read (and that is not itself an answer)."""
    if len(wire) < HEADER or wire[2] & 0x80:
        return None
    response = dns.message.Message(id=int.from_bytes(wire[:2], "big"))
    response.flags = dns.flags.QR
    response.set_rcode(dns.rcode.FORMERR)
    return response.to_wire()


def _fit(response: dns.message.Message, limit: int) -> bytes:
    """The answer in at most `limit` bytes. When too large: the additional records that fit
    (no TC: they are extra), else TC and the answer records that fit (each record is an RRset
    of its own, so it can be cut between any two)."""
    with contextlib.suppress(dns.exception.TooBig):
        return response.to_wire(max_size=limit)
    additional = list(response.additional)
    response.additional = []
    try:
        response.to_wire(max_size=limit)
    except dns.exception.TooBig:
        response.flags |= dns.flags.TC
        response.answer = response.answer[: _most(response, "answer", limit)]
        if not response.answer:
            response.authority = []
        return response.to_wire(max_size=limit)
    response.additional = additional
    response.additional = additional[: _most(response, "additional", limit)]
    return response.to_wire(max_size=limit)


def _most(response: dns.message.Message, section: str, limit: int) -> int:
    """How many of `section`'s records fit in `limit` bytes (those before it kept): a binary
    search, each try stopping at `limit` bytes."""
    records = list(getattr(response, section))
    fits, too_many = 0, len(records) + 1
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        setattr(response, section, records[:middle])
        try:
            response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            too_many = middle
        else:
            fits = middle
    setattr(response, section, records)
    return fits
