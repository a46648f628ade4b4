"""The edge against its own OpenAPI document (schemathesis' `st run`, on `govbus up`).

What the document says a request may be, the server accepts (`positive_data_acceptance`); what
it says an answer is, the server answers (`status_code_conformance`,
`response_schema_conformance`, and `content_type_conformance`: every error is problem+json); and
never a server error (`not_a_server_error`, with every 503 the workers' considered verdict:
`_fuzz_hooks.designed_unavailable`). The coverage, fuzzing and
stateful phases run, bounded by `fuzz.toml` (max-examples per operation, a fixed seed).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from http_edge import SCOPES, mint_token
from tests._wait import wait_until
from tests.e2e._up import free_port, start_up, wait_ready

ROOT = Path(__file__).resolve().parents[2]
ST = str(Path(sys.executable).with_name("st"))
CONFIG = Path(__file__).with_name("fuzz.toml")
CHECKS = (
    "positive_data_acceptance",
    "status_code_conformance",
    "response_schema_conformance",
    "not_a_server_error",
    "content_type_conformance",
    "designed_unavailable",
)
SECRET = "fuzz-secret-" + "f" * 32
TOKEN = mint_token(list(SCOPES), secret=SECRET)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


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
        wait_until(
            lambda: httpx.get(f"{url}/v1/services/host/pick", headers=AUTH).status_code == 200,
            timeout=10,
            interval=0.01,
            what="the host to become pickable",
        )
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_the_edge_keeps_to_its_openapi_document(edge_url):
    run = subprocess.run(
        [
            ST,
            "--config-file",
            str(CONFIG),
            "--no-color",
            "run",
            f"{edge_url}/openapi.json",
            "--checks",
            ",".join(CHECKS),
        ],
        cwd=ROOT,
        env={**os.environ, "GOVBUS_FUZZ_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    out = run.stdout + run.stderr
    tested = re.search(r"Tested: (\d+)", out)
    cases = re.search(r"(\d+) generated, (\d+) passed", out)
    print(f"schemathesis: {tested and tested.group(0)}, {cases and cases.group(0)}")
    assert run.returncode == 0, out[-6000:]
    assert tested and int(tested.group(1)) >= 20, out[-2000:]  # every operation but the stream
    assert cases and cases.group(1) == cases.group(2), out[-2000:]
