"""One run of a check against real local servers: each verdict, and what a bad target costs."""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from health_checker.probes import probe
from schemas import Check
from schemas.checks import OUTPUT_LIMIT
from tests._targets import Targets


@pytest.fixture
async def targets():
    async with Targets() as running:
        yield running


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as client:
        yield client


INSECURE = ssl.create_default_context()


async def run(session, **check) -> tuple[str, str]:
    return await probe(Check(**check), session, INSECURE)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [(200, "passing"), (204, "passing"), (429, "warning"), (500, "critical"), (404, "critical")],
)
async def test_http_verdicts_are_consuls(targets, session, code, verdict):
    status, output = await run(session, http=f"{targets.url}/status/{code}")
    assert status == verdict
    assert output.startswith(f"HTTP GET {targets.url}/status/{code}: {code}")
    assert output.endswith(f"answered {code}") or code == 204


async def test_a_target_that_hangs_costs_its_timeout(targets, session):
    status, output = await run(session, http=f"{targets.url}/hang", timeout_s=0.3)
    assert status == "critical" and "timed out after 0.3 s" in output


async def test_a_refused_connection_is_critical(targets, session):
    port = targets.closed_port()
    status, output = await run(session, http=f"http://127.0.0.1:{port}/health")
    assert status == "critical" and f"127.0.0.1:{port}" in output


async def test_a_reset_connection_is_critical(targets, session):
    port = await targets.reset_port()
    assert (await run(session, http=f"http://127.0.0.1:{port}/"))[0] == "critical"


async def test_endless_redirects_are_critical(targets, session):
    status, output = await run(session, http=f"{targets.url}/redirect")
    assert status == "critical" and "more than 10 redirects" in output


async def test_a_10_mb_answer_costs_only_a_bounded_read(targets, session):
    status, output = await run(session, http=f"{targets.url}/big", timeout_s=30)
    assert status == "passing"
    assert len(output.encode()) <= OUTPUT_LIMIT
    # The server noticed the client had gone long before it could send 10 MB.
    assert targets.big_sent < 10 * 1024 * 1024


async def test_tcp_connect_passes_and_a_closed_port_is_critical(targets, session):
    port = int(targets.url.rsplit(":", 1)[1])
    assert await run(session, tcp=f"127.0.0.1:{port}") == (
        "passing",
        f"TCP connect 127.0.0.1:{port}: success",
    )
    closed = targets.closed_port()
    status, output = await run(session, tcp=f"127.0.0.1:{closed}")
    assert status == "critical" and output.startswith(f"TCP connect 127.0.0.1:{closed}: ")
