"""`GOVBUS_TLS_CERT` / `GOVBUS_TLS_KEY`: the edge of a real `govbus up` serves HTTPS only."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess

import httpx
import pytest

from http_edge import SCOPES, mint_token
from tests._certs import TestCA
from tests._wait import wait_until
from tests.e2e._up import GOVBUS, free_port, start_up, stop

SECRET = "tls-e2e-secret-" + "t" * 32


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("pki"))


def wait_https(proc: subprocess.Popen[str], base: str, client: httpx.Client) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"govbus up exited {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            return client.get(f"{base}/readyz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=20, what="govbus up to serve HTTPS")


def test_govbus_up_serves_https_only(tmp_path, ca):
    server = ca.issue("edge")
    port = free_port()
    proc = start_up(
        tmp_path,
        port,
        GOVBUS_TLS_CERT=str(server.cert),
        GOVBUS_TLS_KEY=str(server.key),
        GOVBUS_AUTH_SECRET=SECRET,
    )
    trusting = httpx.Client(verify=ssl.create_default_context(cafile=str(ca.cert)))
    base = f"https://127.0.0.1:{port}"
    try:
        wait_https(proc, base, trusting)
        assert trusting.get(f"{base}/healthz").status_code == 200
        token = mint_token(SCOPES, secret=SECRET)
        r = trusting.get(f"{base}/v1/services", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        assert "index" in r.json()
        # the same port does not speak plain HTTP
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        # and a client that does not trust the CA refuses the certificate
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"{base}/healthz", timeout=5)
    finally:
        trusting.close()
        code, out, err = stop(proc, signal.SIGTERM)
    assert code == 0, err
    assert f"edge on https://127.0.0.1:{port}" in out


@pytest.mark.parametrize(
    ("command", "cert", "key", "needle"),
    [
        ("edge", "CERT", None, "GOVBUS_TLS_KEY: not set, but GOVBUS_TLS_CERT is"),
        ("edge", None, "KEY", "GOVBUS_TLS_CERT: not set, but GOVBUS_TLS_KEY is"),
        ("edge", "MISSING", "KEY", "GOVBUS_TLS_CERT: cannot read"),
        ("edge", "CERT", "MISSING", "GOVBUS_TLS_KEY: cannot read"),
        ("edge", "JUNK", "KEY", "GOVBUS_TLS_CERT: {junk} holds no PEM certificate"),
        ("edge", "CERT", "JUNK", "GOVBUS_TLS_KEY: {junk} holds no PEM private key"),
        ("edge", "CERT", "OTHER", "GOVBUS_TLS_KEY: {other} is not the key of the certificate"),
        ("up", "CERT", "OTHER", "GOVBUS_TLS_KEY: {other} is not the key of the certificate"),
        ("up", None, "KEY", "GOVBUS_TLS_CERT: not set, but GOVBUS_TLS_KEY is"),
    ],
)
def test_bad_tls_files_are_one_line_naming_the_variable(tmp_path, ca, command, cert, key, needle):
    server, other = ca.issue("edge"), ca.issue("other")
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN NOTHING-----\n")
    paths = {
        "CERT": server.cert,
        "KEY": server.key,
        "OTHER": other.key,
        "JUNK": junk,
        "MISSING": tmp_path / "missing.pem",
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env = {**clean, "GOVBUS_AUTH_SECRET": SECRET}
    for variable, name in (("GOVBUS_TLS_CERT", cert), ("GOVBUS_TLS_KEY", key)):
        if name is not None:
            env[variable] = str(paths[name])
    run = subprocess.run(
        [GOVBUS, command, "--http", f"127.0.0.1:{free_port()}"],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode != 0
    assert needle.format(junk=junk, other=other.key) in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1, run.stderr
