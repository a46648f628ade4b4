"""The edge while the broker is away: quick 503s with Retry-After, never a hang or a 500; back
to 200 by itself once the broker returns."""

from __future__ import annotations

import asyncio
import time

import pytest

from http_edge import Limits
from tests._edge_stack import edge_stack
from tests._wait import eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.faults]


async def eventually_status(client, path, headers, status, timeout=60.0):
    async def answered():
        r = await client.get(path, headers=headers)
        return r if r.status_code == status else None

    return await eventually(
        answered, timeout=timeout, interval=0.1, what=f"{path} to answer {status}"
    )


async def test_broker_away_is_503_then_back_to_200(node, tmp_path):
    limits = Limits(rpc_timeout_s=1.0, request_timeout_s=2.0)
    async with edge_stack(node.url, tmp_path, limits=limits) as stack:
        c, h = stack.client, stack.headers
        body = {"service": "web", "instance_id": "web-1", "address": "10.0.0.1", "port": 80}
        assert (await c.post("/v1/instances", headers=h, json=body)).status_code == 202
        await eventually_status(c, "/v1/services/web", h, 200)

        await asyncio.to_thread(node.stop_app)
        try:
            for path in ("/v1/services/web", "/v1/resources", "/readyz"):
                began = time.monotonic()
                r = await c.get(path, headers=h)
                assert r.status_code in (503, 504), (path, r.status_code)
                assert time.monotonic() - began < 3.0
                assert r.content_type == "application/problem+json" or path == "/readyz"
                if r.status_code == 503:
                    assert "Retry-After" in r.headers
            r = await c.post("/v1/instances", headers=h, json={**body, "instance_id": "web-2"})
            assert r.status_code in (503, 504)
        finally:
            await asyncio.to_thread(node.start_app)

        # everything reconnects by itself: the registry kept web-1, and new work goes through
        await eventually_status(c, "/readyz", h, 200)
        r = await eventually_status(c, "/v1/services/web", h, 200)
        assert [i["instance_id"] for i in (await r.get_json())["instances"]] == ["web-1"]
        await eventually_status(c, "/v1/resources", h, 200)
