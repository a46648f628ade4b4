"""Registration through the real py-consul client against `govbus up`: an HTTP check the
checker runs, a TTL check updated by pass/fail, deregistration, and Consul's headers."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

import consul
import httpx

from tests._wait import wait_until
from tests.e2e._up import GOVBUS, free_port, start_up, stop, wait_ready

SECRET = "consul-e2e-" + "s" * 32


def mint() -> str:
    env = {**os.environ, "GOVBUS_AUTH_SECRET": SECRET}
    args = [GOVBUS, "token", "--scope", "registry:read", "--scope", "registry:write"]
    return subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.strip()


def wait_for(predicate: Callable[[], object], what: str) -> object:
    # Each poll is an HTTP request to `govbus up`: every 0.1 s is enough.
    return wait_until(predicate, timeout=20, interval=0.1, what=what)


def test_py_consul_registers_with_checks(tmp_path):
    port = free_port()
    proc = start_up(tmp_path, port, GOVBUS_AUTH_SECRET=SECRET)
    base = f"http://127.0.0.1:{port}"
    token = mint()
    auth = {"Authorization": f"Bearer {token}"}

    def status_of(service: str) -> str | None:
        r = httpx.get(f"{base}/v1/services/{service}", headers=auth)
        return r.json()["instances"][0]["status"] if r.status_code == 200 else None

    try:
        wait_ready(proc, port)
        client = consul.Consul(host="127.0.0.1", port=port, token=token)
        check = consul.Check.http(f"{base}/healthz", interval="1s", timeout="1s")
        assert client.agent.service.register(
            "web", service_id="web-1", address="127.0.0.1", port=port, check=check
        )
        # The checker runs it: critical until its first pass, then passing.
        wait_for(lambda: status_of("web") == "passing", "the HTTP check to pass")
        (instance,) = httpx.get(f"{base}/v1/services/web", headers=auth).json()["instances"]
        assert instance["ttl_s"] == 0
        assert instance["checks"][0]["check"]["http"] == f"{base}/healthz"

        # A TTL check: heartbeats, with a status, through /v1/agent/check/*.
        ttl = consul.Check.ttl("30s")
        assert client.agent.service.register("cron", service_id="cron-1", port=1, check=ttl)
        # As Consul's: a TTL check is critical until its first pass.
        wait_for(lambda: status_of("cron") == "critical", "cron to register, critical")
        assert client.agent.check.ttl_pass("service:cron-1")
        wait_for(lambda: status_of("cron") == "passing", "the first pass")
        assert client.agent.check.ttl_fail("service:cron-1", notes="disk full")
        wait_for(lambda: status_of("cron") == "critical", "the TTL check to fail")
        assert client.agent.check.ttl_pass("service:cron-1")
        wait_for(lambda: status_of("cron") == "passing", "the TTL check to pass")

        assert client.agent.service.deregister("cron-1")
        wait_for(lambda: status_of("cron") is None, "cron to be deregistered")

        # Go's CamelCase body, with a bad interval: a 422 naming the field as sent.
        def put(path: str, body: object = None) -> httpx.Response:
            headers = {"X-Consul-Token": token}
            return httpx.put(f"{base}{path}", json=body, headers=headers)

        check = {"TCP": "127.0.0.1:5432", "Interval": "500ms"}
        body = {"Name": "db", "ID": "db-1", "Port": 5432, "Check": check}
        r = put("/v1/agent/service/register", body)
        assert r.status_code == 422
        assert "checks.0.interval_s" in r.text
        assert int(r.headers["X-Consul-Index"]) >= 1
        body["Check"] = {"TCP": "127.0.0.1:5432", "Interval": "ten seconds"}
        r = put("/v1/agent/service/register", body)
        assert r.status_code == 422 and "Check.Interval" in r.text
        body["Check"] = {"TCP": f"127.0.0.1:{port}", "Interval": "1s"}
        r = put("/v1/agent/service/register", body)
        assert r.status_code == 200
        assert r.headers["X-Consul-KnownLeader"] == "true"
        wait_for(lambda: status_of("db") == "passing", "the TCP check to pass")
        assert put("/v1/agent/service/deregister/nope").status_code == 404
    finally:
        code, _, err = stop(proc)
    assert code == 0, err
