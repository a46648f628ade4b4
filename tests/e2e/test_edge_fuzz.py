"""Fuzz the edge from its own OpenAPI (schemathesis) against `govbus up`: no 5xx, ever.

Bounded: at most 30 examples per operation, against one `govbus up` process for the module.
"""

from __future__ import annotations

import signal
import subprocess
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from http_edge import SCOPES, mint_token
from tests.e2e.test_edge_up import free_port, start_up, wait_ready

SECRET = "fuzz-secret-" + "f" * 32
AUTH = {"Authorization": f"Bearer {mint_token(list(SCOPES), secret=SECRET)}"}


@pytest.fixture(scope="module")
def edge_url(tmp_path_factory):
    port = free_port()
    proc = start_up(tmp_path_factory.mktemp("fuzz"), port, GOVBUS_AUTH_SECRET=SECRET)
    try:
        wait_ready(proc, port)
        url = f"http://127.0.0.1:{port}"
        # A host to place VMs on: without one, creating a VM is SPEC's 503 (no healthy host).
        host = {"service": "host", "instance_id": "host-1", "address": "10.0.0.1", "port": 22}
        r = httpx.post(f"{url}/v1/instances", headers=AUTH, json={**host, "ttl_s": 86_400})
        assert r.status_code == 202, r.text
        for _ in range(200):
            if httpx.get(f"{url}/v1/services/host/pick", headers=AUTH).status_code == 200:
                break
            time.sleep(0.01)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_no_server_errors(edge_url):
    # The event stream never ends by itself: it is tested in test_edge.py, not fuzzed.
    schema = schemathesis.openapi.from_url(f"{edge_url}/openapi.json").exclude(path="/v1/events")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    seen: dict[int, int] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def no_5xx(case):
            response = case.call(base_url=edge_url, headers=AUTH, timeout=10)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                case.method,
                case.formatted_path,
                response.text[:500],
            )
            if response.status_code >= 400:
                assert response.headers.get("content-type") == ["application/problem+json"], (
                    response.status_code,
                    response.text[:300],
                )

        no_5xx()
    print("fuzz status codes:", dict(sorted(seen.items())))
    assert sum(seen.values()) >= 200, seen
    assert any(200 <= code < 300 for code in seen), seen
