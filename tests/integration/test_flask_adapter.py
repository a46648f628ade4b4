"""A plain Flask (WSGI) app on the bus through `bus.flask`: the article's `/hello` service."""

from __future__ import annotations

import asyncio

import pytest

from examples.flask_hello.app import create_app
from tests._edge_stack import edge_stack, private_vhost

pytestmark = [pytest.mark.asyncio, pytest.mark.rabbitmq]


@pytest.fixture(scope="module")
def vhost_url():
    import os
    from uuid import uuid4

    url = os.environ.get("GOVBUS_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    with private_vhost(url, f"flask-{uuid4().hex[:8]}") as vhost:
        yield vhost


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

            for _ in range(500):
                r = await c.get("/v1/services/hello", headers=h)
                if r.status_code == 200 and (await r.get_json())["instances"]:
                    break
                await asyncio.sleep(0.01)
            instance = (await r.get_json())["instances"][0]
            assert instance["instance_id"] == agent.instance_id and instance["port"] == 5001
            for _ in range(300):  # heartbeats every ttl/3 keep it passing
                if agent.heartbeats >= 3:
                    break
                await asyncio.sleep(0.01)
            assert agent.heartbeats >= 3
            r = await c.get("/v1/services/hello", headers=h)
            assert (await r.get_json())["instances"][0]["status"] == "passing"
        finally:
            await asyncio.to_thread(agent.close)
        for _ in range(500):
            r = await c.get("/v1/services/hello", headers=h)
            if r.status_code == 404 or not (await r.get_json())["instances"]:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the Flask instance never deregistered")
