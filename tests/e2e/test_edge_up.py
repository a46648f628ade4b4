"""`govbus up` as a process: the README's tour runs verbatim against it; signals stop it."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from tests.e2e._up import GOVBUS, ROOT, free_port, start_up, stop, wait_ready


def readme_tour() -> str:
    text = (ROOT / "README.md").read_text()
    lines = text.splitlines()
    assert lines[2:6] == ["```sh", "make run", "make test", "```"], "README must start with them"
    match = re.search(r"<!-- tour -->\n```sh\n(.*?)```\n<!-- /tour -->", text, re.S)
    assert match, "README has no tour block"
    return match.group(1)


def test_readme_tour_runs_verbatim_against_govbus_up(tmp_path):
    port, dns = free_port(), free_port()
    proc = start_up(tmp_path, port, GOVBUS_DNS=f"127.0.0.1:{dns}")  # not 8600: one for all tests
    try:
        wait_ready(proc, port)
        script = readme_tour().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        script = script.replace("-p 8600", f"-p {dns}")
        script = script.replace(".venv/bin/python", sys.executable)  # the tour runs elsewhere
        script += "\nsleep 1.5\nkill $! 2>/dev/null || true\n"
        # twice: the tour leaves the state as it found it, so it can be run again
        run = subprocess.run(
            ["bash", "-e", "-c", script + "\n" + script],
            check=False,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert run.returncode == 0, run.stderr
        out = run.stdout
        assert "/problems/" not in out, out
        assert '"instance_id":"host-1"' in out and '"host":"host-1"' in out
        # the blocking read answered with host-2, which registered while it waited
        decoder, listings = json.JSONDecoder(), []
        for at in (
            m.start() for m in re.finditer(r'\{"index":\d+,"protection":\w+,"service":"host"', out)
        ):
            listings.append([i["instance_id"] for i in decoder.raw_decode(out, at)[0]["instances"]])
        assert listings == [["host-1"], ["host-1", "host-2"]] * 2, out  # the tour runs twice
        # py-consul's passing-only health query
        assert "consul index" in out and "['host-1', 'host-2']" in out, out
        # dig's SRV answer: both hosts (10.0.0.5, 10.0.0.6) on port 22
        for target in ("0a000005", "0a000006"):
            assert f"1 1 22 {target}.addr.dc1.consul." in out, out
        for event in ("resource.updated", "registry.instance.deregistered", "resource.deleted"):
            assert f"event: {event}" in out, out
        ids = [line for line in out.splitlines() if line.startswith("id: ")]
        assert len(ids) == len(set(ids)), "an event reached the stream twice"
    finally:
        code, out, err = stop(proc)
    assert code == 0, err
    assert f"http://127.0.0.1:{port}" in out and "admin token" in out
    assert (tmp_path / "govbus.db").exists()
    assert oct((tmp_path / "govbus.token").stat().st_mode & 0o777) == "0o600"


def test_sigterm_with_an_open_stream_exits_zero_and_keeps_state(tmp_path):
    port = free_port()
    secret = "e2e-secret-" + "x" * 32
    env = {"GOVBUS_AUTH_SECRET": secret}
    proc = start_up(tmp_path, port, **env)
    token = subprocess.run(
        [
            GOVBUS,
            "token",
            "--scope",
            "events:read",
            "--scope",
            "resources:write",
            "--scope",
            "resources:read",
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert token.count(".") == 2 and "\n" not in token
    headers = {"Authorization": f"Bearer {token}"}
    try:
        wait_ready(proc, port)
        base = f"http://127.0.0.1:{port}"
        r = httpx.post(
            f"{base}/v1/resources",
            headers=headers,
            json={"kind": "network", "name": "net-1", "cidr": "10.0.0.0/8"},
        )
        assert r.status_code == 201, r.text
        with httpx.stream("GET", f"{base}/v1/events", headers=headers, timeout=10) as stream:
            assert stream.status_code == 200
            code, _out, err = stop(proc, signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, err
    assert "Traceback" not in err
    # restart: the store kept the resource
    proc = start_up(tmp_path, port, **env)
    try:
        wait_ready(proc, port)
        r = httpx.get(f"http://127.0.0.1:{port}/v1/resources/net-1", headers=headers)
        assert r.status_code == 200 and r.json()["cidr"] == "10.0.0.0/8"
    finally:
        stop(proc)


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["edge", "--http", "127.0.0.1:1"], {"GOVBUS_AUTH_SECRET": ""}, "GOVBUS_AUTH_SECRET"),
        (["up", "--http", "nonsense"], {}, "GOVBUS_HTTP"),
        (["up", "--http", "192.0.2.1:8080"], {}, "cannot listen"),
        (["edge"], {"GOVBUS_AUTH": "maybe"}, "GOVBUS_AUTH"),
        (["edge"], {"GOVBUS_CORS_ORIGINS": "*"}, "GOVBUS_CORS_ORIGINS: '*' is not an origin"),
        (["up"], {"GOVBUS_AUTH_JWKS_URL": "https://idp/jwks"}, "GOVBUS_AUTH_ISSUER: not set"),
        (
            ["up"],
            {
                "GOVBUS_AUTH_JWKS_URL": "https://idp/jwks",
                "GOVBUS_AUTH_ISSUER": "govbus",
                "GOVBUS_AUTH_AUDIENCE": "edge",
            },
            "GOVBUS_AUTH_ISSUER: 'govbus' is govbus' own issuer",
        ),
        (
            ["edge", "--url", "amqp://guest:guest@127.0.0.1:1/"],
            {"GOVBUS_AUTH_SECRET": "k" * 40},
            "cannot reach the broker",
        ),
        (["token", "--scope", "root"], {"GOVBUS_AUTH_SECRET": "k" * 40}, "unknown scope"),
        (["token", "--scope", "events:read"], {}, "GOVBUS_AUTH_SECRET"),
        (["token", "--scope", "events:read"], {"GOVBUS_AUTH_SECRET": "short"}, "at least 32"),
    ],
)
def test_cli_bad_configuration_is_one_line(tmp_path, args, env, needle):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    run = subprocess.run(
        [GOVBUS, *args],
        check=False,
        cwd=tmp_path,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0
    assert needle in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
