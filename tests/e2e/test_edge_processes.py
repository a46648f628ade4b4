"""One component a process on RabbitMQ: two `govbus discovery`, `govbus manager`, `govbus edge`."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time

import dns.message
import dns.query
import httpx
import pytest

from http_edge import SCOPES, mint_token
from tests._wait import wait_until
from tests.e2e._up import GOVBUS, free_port

pytestmark = pytest.mark.rabbitmq

SECRET = "procs-secret-" + "p" * 32


def wait_line(proc: subprocess.Popen[str], needle: str, timeout: float = 30.0) -> None:
    """Read the process's stderr until a line contains `needle`."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                line = proc.stderr.readline()
                if needle in line:
                    return
                assert line or proc.poll() is None, f"exited {proc.returncode} before {needle!r}"
    raise AssertionError(f"never saw {needle!r}")


def test_components_as_processes_answer_through_the_edge(vhost_url, tmp_path):
    port, dns_port = free_port(), free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env = {**clean, "GOVBUS_URL": vhost_url, "GOVBUS_AUTH_SECRET": SECRET}
    env["GOVBUS_DNS"] = f"127.0.0.1:{dns_port}"  # the edge's; the workers have none
    commands = {
        "discovery": ["discovery", "--db", f"sqlite+aiosqlite:///{tmp_path}/d1.db"],
        "discovery-b": [
            "discovery",
            "--queue",
            "govbus.discovery.b",
            "--db",
            f"sqlite+aiosqlite:///{tmp_path}/d2.db",
        ],
        "manager": ["manager", "--db", f"sqlite+aiosqlite:///{tmp_path}/m.db"],
        "edge": ["edge", "--http", f"127.0.0.1:{port}"],
    }
    procs = {
        name: subprocess.Popen(
            [GOVBUS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for name, args in commands.items()
    }
    try:
        # Both replicas consume before anything is published: a replica's queue is durable,
        # so later it catches up on what it missed, but not on what came before it existed.
        wait_line(procs["discovery"], "discovery worker running")
        wait_line(procs["discovery-b"], "queue govbus.discovery.b")
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {mint_token(list(SCOPES), secret=SECRET)}"}

        def answered() -> bool:
            try:
                r = httpx.get(f"{base}/v1/resources", headers=headers, timeout=2)
            except httpx.HTTPError:
                return False
            return r.status_code == 200

        wait_until(answered, timeout=30, interval=0.1, what="the edge and manager to answer")
        host = {"service": "host", "instance_id": "host-1", "address": "10.0.0.1", "port": 22}
        assert httpx.post(f"{base}/v1/instances", headers=headers, json=host).status_code == 202
        # both discovery replicas learn of it: every answer lists it
        wait_until(
            lambda: all(
                httpx.get(f"{base}/v1/services/host", headers=headers).status_code == 200
                for _ in range(6)
            ),
            timeout=30,
            interval=0.01,
            what="six answers in a row to list host-1",
        )
        # `govbus edge` with GOVBUS_DNS answers DNS too
        query = dns.message.make_query("host.service.consul", "A")
        answer = dns.query.udp(query, "127.0.0.1", port=dns_port, timeout=5)
        assert [rd.to_text() for rrset in answer.answer for rd in rrset] == ["10.0.0.1"]
        vm = {"kind": "vm", "name": "web-1", "vcpus": 1, "memory_mb": 512, "image": "debian-12"}
        r = httpx.post(f"{base}/v1/resources", headers=headers, json=vm)
        assert r.status_code == 201, r.text
        assert r.json()["host"] == "host-1"
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        results = {name: proc.communicate(timeout=20) for name, proc in procs.items()}
    for name, proc in procs.items():
        assert proc.returncode == 0, (name, results[name][1])
        assert "Traceback" not in results[name][1], (name, results[name][1])
    assert f"DNS on 127.0.0.1:{dns_port}" in results["edge"][1]
