"""A plain Flask (WSGI) app on the bus through `bus.flask`: the article's `/hello` service."""

from __future__ import annotations

import asyncio

import pytest

from examples.flask_hello.app import create_app
from tests._edge_stack import edge_stack
from tests._wait import eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.rabbitmq]


async def test_flask_app_registers_heartbeats_queries_and_deregisters(vhost_url, tmp_path):
    async with edge_stack(vhost_url, tmp_path) as stack:
        c, h = stack.client, stack.headers
        await c.post(
            "/v1/resources",
            headers=h,
            json={"kind": "network", "name": "net-a", "cidr": "10.9.0.0/16"},
        )
        flask_app = await asyncio.to_thread(create_app, vhost_url, 5001, 0.9)
        agent = flask_app.extensions["govbus"]
        web = flask_app.test_client()
        try:
            assert (await asyncio.to_thread(web.get, "/hello")).data == b"Hello World!"
            listed = await asyncio.to_thread(web.get, "/resource")
            assert [r["name"] for r in listed.get_json()] == ["net-a"]
            one = await asyncio.to_thread(web.get, "/resource/net-a")
            assert one.get_json()["cidr"] == "10.9.0.0/16"
            assert (await asyncio.to_thread(web.get, "/resource/nope")).status_code == 404
            assert (await asyncio.to_thread(web.get, "/resource/NO*PE")).status_code == 404

            async def listed():
                r = await c.get("/v1/services/hello", headers=h)
                return r if r.status_code == 200 and (await r.get_json())["instances"] else None

            r = await eventually(listed, interval=0.01, what="the Flask instance to be listed")
            instance = (await r.get_json())["instances"][0]
            assert instance["instance_id"] == agent.instance_id and instance["port"] == 5001
            # heartbeats every ttl/3 keep it passing
            await eventually(lambda: agent.heartbeats >= 3, what="three heartbeats")
            assert agent.heartbeats >= 3
            r = await c.get("/v1/services/hello", headers=h)
            assert (await r.get_json())["instances"][0]["status"] == "passing"
        finally:
            await asyncio.to_thread(agent.close)

        async def gone():
            r = await c.get("/v1/services/hello", headers=h)
            return r.status_code == 404 or not (await r.get_json())["instances"]

        await eventually(gone, interval=0.01, what="the Flask instance to deregister")
