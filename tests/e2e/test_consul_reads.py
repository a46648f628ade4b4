"""Consul's reads and maintenance, through real clients: py-consul against `govbus up`, and
the Go client's request shapes (by hand, with httpx) against `govbus discovery` + `govbus edge`
processes on RabbitMQ."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import consul
import httpx
import pytest

from http_edge import SCOPES, mint_token
from tests._wait import wait_until
from tests.e2e._up import GOVBUS, free_port, start_up, stop, wait_ready

SECRET = "consul-reads-" + "r" * 32


def fresh_token() -> str:
    # Minted when a test starts: the suite may run longer than a token minted at import lives.
    return mint_token(list(SCOPES), secret=SECRET)


def wait_for(predicate: Callable[[], object], what: str) -> object:
    # Each poll is an HTTP request to the edge: every 0.05 s is enough.
    return wait_until(predicate, timeout=20, interval=0.05, what=what)


def test_py_consul_reads_blocks_and_maintains_against_govbus_up(tmp_path):
    port = free_port()
    proc = start_up(tmp_path, port, GOVBUS_AUTH_SECRET=SECRET)
    client = consul.Consul(host="127.0.0.1", port=port, token=fresh_token())
    bad = consul.Consul(host="127.0.0.1", port=port, token="not-a-token")
    try:
        wait_ready(proc, port)
        ttl = consul.Check.ttl("30s")
        tags = ["v1", "blue"]
        meta = {"zone": "z1"}
        for n in (1, 2):
            assert client.agent.service.register(
                "api", service_id=f"api-{n}", address=f"10.0.0.{n}", port=8080, tags=tags,
                meta=meta, check=ttl,
            )  # fmt: skip

        def ids() -> list[str]:
            return sorted(s["ServiceID"] for s in client.catalog.service("api")[1])

        wait_for(lambda: ids() == ["api-1", "api-2"], "both to register")
        assert client.agent.check.ttl_pass("service:api-1", notes="fine")
        assert client.agent.check.ttl_fail("service:api-2", notes="disk full")

        def passing() -> list[str]:
            _, entries = client.health.service("api", passing=True)
            return [e["Service"]["ID"] for e in entries]

        wait_for(lambda: passing() == ["api-1"], "api-2 to fail its TTL check")
        _, entries = client.health.service("api", tag="blue")
        assert {e["Service"]["ID"] for e in entries} == {"api-1", "api-2"}
        (entry,) = [e for e in entries if e["Service"]["ID"] == "api-2"]
        assert entry["Node"]["Node"] == "10.0.0.2" and entry["Node"]["Meta"] == meta
        (check,) = entry["Checks"]
        assert (check["CheckID"], check["Status"]) == ("service:api-2", "critical")
        assert check["Output"] == "disk full"

        _, services = client.catalog.services()
        assert sorted(services["api"]) == ["blue", "v1"]
        _, listed = client.catalog.service("api", tag="v1")
        assert sorted(s["ServiceID"] for s in listed) == ["api-1", "api-2"]
        assert listed[0]["ServicePort"] == 8080 and listed[0]["Datacenter"] == "dc1"
        _, critical = client.health.state("critical")
        assert "service:api-2" in [c["CheckID"] for c in critical]
        assert "service:api-1" not in [c["CheckID"] for c in critical]
        _, checks = client.health.checks("api")
        assert sorted(c["CheckID"] for c in checks) == ["service:api-1", "service:api-2"]
        assert client.status.leader() == f"127.0.0.1:{port}"
        index, _ = client.health.service("nope")
        assert int(index) >= 1  # an unknown service: [] with its index, as Consul answers

        # Maintenance: a drain (Consul's maintenance check), then a re-registration ends it.
        assert client.agent.service.maintenance("api-1", "true", reason="deploy")
        wait_for(lambda: passing() == [], "api-1 to enter maintenance")
        _, entries = client.health.service("api")
        checks = {c["CheckID"]: c["Status"] for e in entries for c in e["Checks"]}
        assert checks["_service_maintenance:api-1"] == "critical"
        assert client.agent.service.maintenance("api-1", "false")
        wait_for(lambda: passing() == ["api-1"], "api-1 to leave maintenance")

        # A blocking read returns on the deregistration, with a larger index, not before.
        index, _ = client.health.service("api")
        with ThreadPoolExecutor(1) as pool:
            blocked = pool.submit(client.health.service, "api", index=index, wait="60s")
            metrics = f"http://127.0.0.1:{port}/metrics"
            wait_for(
                lambda: "govbus_edge_blocking_reads 1.0" in httpx.get(metrics).text,
                "the read to block on the edge",
            )
            again, _ = client.health.service("api")
            assert again == index and not blocked.done()
            assert client.agent.service.deregister("api-2")
            after, entries = blocked.result(timeout=20)
        assert int(after) > int(index)
        assert [e["Service"]["ID"] for e in entries] == ["api-1"]

        with pytest.raises(consul.ACLPermissionDenied):
            bad.health.service("api")
        bad.http.close()
        bad = consul.Consul(host="127.0.0.1", port=port)  # no token
        with pytest.raises(consul.ACLPermissionDenied):
            bad.catalog.services()
    finally:
        client.http.close()
        bad.http.close()
        code, _, err = stop(proc)
    assert code == 0, err


@pytest.fixture
def edge_processes(vhost_url: str, tmp_path: Path) -> Iterator[str]:
    """`govbus discovery` and `govbus edge` as processes on a private vhost."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env = {**clean, "GOVBUS_URL": vhost_url, "GOVBUS_AUTH_SECRET": SECRET}
    commands = (
        ["discovery", "--db", f"sqlite+aiosqlite:///{tmp_path}/d.db"],
        ["edge", "--http", f"127.0.0.1:{port}"],
    )
    procs = [
        subprocess.Popen([GOVBUS, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for args in commands
    ]
    base = f"http://127.0.0.1:{port}"
    token = fresh_token()

    def answered() -> bool:
        try:
            r = httpx.get(f"{base}/v1/catalog/services", headers={"X-Consul-Token": token})
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    try:
        wait_until(answered, timeout=30, interval=0.1, what="the edge and discovery to answer")
        yield base
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


@pytest.mark.rabbitmq
def test_go_client_request_shapes_and_per_service_blocking(edge_processes):
    base = edge_processes
    headers = {"X-Consul-Token": fresh_token()}
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        go_client_shapes(http)


def go_client_shapes(http: httpx.Client) -> None:

    def register(name: str, instance_id: str, tags: list[str], meta: dict[str, str]) -> None:
        # api.AgentServiceRegistration as the Go client encodes it
        body = {
            "ID": instance_id,
            "Name": name,
            "Tags": tags,
            "Port": 9000,
            "Address": "10.2.0.1",
            "Meta": meta,
            "Weights": {"Passing": 3, "Warning": 1},
            # Status: the check's first status (Consul's default, and govbus's, is critical)
            "Check": {"CheckID": f"service:{instance_id}", "TTL": "30s", "Status": "passing"},
        }
        r = http.put("/v1/agent/service/register", json=body)
        assert r.status_code == 200, r.text

    register("alpha", "alpha-1", ["primary"], {"rack": "r1"})
    register("beta", "beta-1", [], {})

    def alpha(**params: str) -> httpx.Response:
        return http.get("/v1/health/service/alpha", params=params)

    wait_for(lambda: alpha().json() != [], "alpha to register")
    r = alpha(dc="dc1", tag="primary", **{"node-meta": "rack:r1"}, stale="")
    assert r.status_code == 200 and r.headers["X-Consul-KnownLeader"] == "true"
    assert r.headers["X-Consul-LastContact"] == "0"
    (entry,) = r.json()
    service, node = entry["Service"], entry["Node"]
    assert service["Weights"] == {"Passing": 3, "Warning": 1}
    assert (service["ID"], service["Service"], service["Port"]) == ("alpha-1", "alpha", 9000)
    assert isinstance(service["CreateIndex"], int) and isinstance(service["ModifyIndex"], int)
    assert node["Datacenter"] == "dc1" and node["Meta"] == {"rack": "r1"}
    assert set(entry["Checks"][0]) >= {"CheckID", "Status", "Output", "ServiceID", "Type"}
    assert alpha(tag="secondary").json() == [] and alpha(**{"node-meta": "rack:r2"}).json() == []
    wrong = alpha(dc="dc9")
    assert wrong.status_code == 404 and "dc1" in wrong.json()["detail"]
    assert int(wrong.headers["X-Consul-Index"]) >= 1

    r = http.get("/v1/catalog/service/alpha", params={"dc": "dc1", "tag": "primary"})
    (item,) = r.json()
    assert item["ServiceTags"] == ["primary"] and item["NodeMeta"] == {"rack": "r1"}
    assert item["ServiceAddress"] == "10.2.0.1" and item["ServicePort"] == 9000
    assert http.get("/v1/agent/self").json()["Config"]["Datacenter"] == "dc1"

    # A blocking read on alpha (Go's ?index=N&wait=60000ms) sleeps through beta's changes.
    index = alpha().headers["X-Consul-Index"]
    beta_index = http.get("/v1/health/service/beta").headers["X-Consul-Index"]
    with ThreadPoolExecutor(2) as pool:
        blocked: Future[httpx.Response] = pool.submit(alpha, index=index, wait="60000ms")
        beta = pool.submit(
            http.get, "/v1/health/service/beta", params={"index": beta_index, "wait": "60000ms"}
        )
        # Go's Agent.UpdateTTL: PUT /v1/agent/check/update/<id> {"Status", "Output"}
        update = {"Status": "critical", "Output": "queue stuck"}
        r = http.put("/v1/agent/check/update/service:beta-1", json=update)
        assert r.status_code == 200
        changed = beta.result(timeout=20)
        assert int(changed.headers["X-Consul-Index"]) > int(beta_index)
        (check,) = changed.json()[0]["Checks"]
        assert (check["Status"], check["Output"]) == ("critical", "queue stuck")
        assert alpha().headers["X-Consul-Index"] == index and not blocked.done()
        assert http.put("/v1/agent/check/warn/service:alpha-1").status_code == 200
        woke = blocked.result(timeout=20)
    assert int(woke.headers["X-Consul-Index"]) > int(index)
    assert woke.json()[0]["Checks"][0]["Status"] == "warning"
    assert http.get("/v1/health/service/alpha", params={"passing": "1"}).json() == []
