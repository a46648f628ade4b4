"""`govbus up`'s DNS as its users meet it: `dig` typed as in the README, and HAProxy (Debian's
`/usr/sbin/haproxy`, `server-template` with `resolvers`) routing to the instances it names,
and no longer to one deregistered."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests._wait import wait_until
from tests.e2e._up import GOVBUS, free_port, start_up, stop, wait_ready

HAPROXY = "/usr/sbin/haproxy"
INSTALL = "apt-get install haproxy (scripts/ensure-services.sh installs it)"


def dig(port: int, *args: str) -> str:
    """`dig` as a user types it against govbus' DNS."""
    dig_path = shutil.which("dig")
    assert dig_path, "dig is missing: apt-get install dnsutils (scripts/ensure-services.sh)"
    run = subprocess.run(
        [dig_path, "@127.0.0.1", "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.fixture
def up(tmp_path) -> Iterator[tuple[str, int, subprocess.Popen[str]]]:
    """`govbus up` (no token needed) with its DNS on a free port: (edge URL, DNS port, process)."""
    http, dns = free_port(), free_port()
    proc = start_up(tmp_path, http, GOVBUS_AUTH="disabled", GOVBUS_DNS=f"127.0.0.1:{dns}")
    try:
        wait_ready(proc, http)
        yield f"http://127.0.0.1:{http}", dns, proc
    finally:
        if proc.poll() is None:
            stop(proc)


def register(base: str, instance_id: str, port: int) -> None:
    body = {"service": "web", "instance_id": instance_id, "address": "127.0.0.1", "port": port}
    r = httpx.post(f"{base}/v1/instances", json=body, timeout=5)
    assert r.status_code == 202, r.text


def test_dig_srv_against_govbus_up(up):
    base, dns, proc = up
    register(base, "web-1", 8001)
    register(base, "web-2", 8002)
    wait_until(
        lambda: dig(dns, "web.service.consul", "SRV", "+short").count("7f000001.addr") == 2,
        timeout=10,
        what="dig to show both instances",
    )
    out = dig(dns, "web.service.consul", "SRV")
    assert "status: NOERROR" in out and "ANSWER: 2" in out, out
    assert "web.service.consul.\t0\tIN\tSRV\t1 1 8001 7f000001.addr.dc1.consul." in out, out
    assert "7f000001.addr.dc1.consul. 0\tIN\tA\t127.0.0.1" in out, out  # additional section
    assert "status: NXDOMAIN" in dig(dns, "nothing.service.consul")
    assert dig(dns, "web.service.consul", "+tcp", "+short").strip() == "127.0.0.1"  # one address
    code, out, _ = stop(proc)
    assert code == 0 and f"DNS on 127.0.0.1:{dns}" in out, out


def test_a_taken_dns_port_is_one_line(tmp_path):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = start_up(tmp_path, free_port(), GOVBUS_DNS=f"127.0.0.1:{port}")
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.splitlines() == [
        f"govbus: error: GOVBUS_DNS: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(set GOVBUS_DNS to another HOST:PORT, or to off)"
    ], err
    bad = subprocess.run(
        [GOVBUS, "up"],
        check=False,
        env={"GOVBUS_DNS": "localhost"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode != 0 and "GOVBUS_DNS" in bad.stderr, bad.stderr
    # Each port free alone, but one for both: refused before anything starts, in one line.
    http = f"127.0.0.1:{free_port()}"
    same = subprocess.run(
        [GOVBUS, "up"],
        check=False,
        env={"GOVBUS_DNS": http, "GOVBUS_HTTP": http},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert same.returncode == 1 and same.stdout == "", same.stdout
    assert same.stderr.splitlines() == [
        f"govbus: error: GOVBUS_DNS: {http} takes the port of GOVBUS_HTTP ({http}): "
        "DNS answers over TCP too; choose another port"
    ], same.stderr


class _Named(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def backends() -> Iterator[dict[str, int]]:
    """Two HTTP servers answering their own name: {name: port}."""
    servers = []
    for name in ("web-1", "web-2"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield {s.name: s.server_address[1] for s in servers}  # type: ignore[attr-defined]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


HAPROXY_CONFIG = """
defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

resolvers govbus
    nameserver govbus 127.0.0.1:{dns}
    accepted_payload_size 8192
    resolve_retries 2
    timeout resolve 200ms
    timeout retry 200ms
    hold valid 200ms
    hold obsolete 0s
    hold nx 200ms
    hold other 200ms

frontend web
    bind 127.0.0.1:{port}
    default_backend web

backend web
    balance roundrobin
    {server}
"""
SERVER = (
    "server-template web 4 _web._tcp.service.consul resolvers govbus resolve-prefer ipv4 "
    "init-addr none check inter 200ms rise 1 fall 1"
)


def test_haproxy_routes_by_govbus_dns(up, backends, tmp_path):
    assert Path(HAPROXY).exists(), f"{HAPROXY} is missing: {INSTALL}"
    base, dns, _ = up
    for name, port in backends.items():
        register(base, name, port)
    front = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(HAPROXY_CONFIG.format(dns=dns, port=front, server=SERVER))
    check = subprocess.run(
        [HAPROXY, "-c", "-f", str(config)], check=False, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr
    log = (tmp_path / "haproxy.log").open("w")
    haproxy = subprocess.Popen([HAPROXY, "-db", "-f", str(config)], stdout=log, stderr=log)
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{front}", timeout=2)

        def names(count: int) -> set[str]:
            assert haproxy.poll() is None, (tmp_path / "haproxy.log").read_text()
            seen = set()
            for _ in range(count):
                try:
                    r = client.get("/")
                except httpx.TransportError as exc:  # not listening yet
                    return {type(exc).__name__}
                if r.status_code != 200:
                    return {f"status {r.status_code}"}
                seen.add(r.text)
            return seen

        wait_until(
            lambda: names(8) == {"web-1", "web-2"},
            timeout=15,
            what="HAProxy to balance across both instances",
        )
        r = httpx.delete(f"{base}/v1/instances/web-2?service=web", timeout=5)
        assert r.status_code == 202, r.text
        wait_until(
            lambda: names(12) == {"web-1"}, timeout=10, what="HAProxy to route to web-1 only"
        )
        assert names(20) == {"web-1"}
        client.close()
    finally:
        haproxy.terminate()
        haproxy.wait(timeout=10)
        log.close()
