"""The edge through real workers on RabbitMQ (a private vhost), and `govbus services|resources`."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from tests._edge_stack import edge_stack
from tests._wait import eventually

pytestmark = [pytest.mark.asyncio, pytest.mark.rabbitmq]

GOVBUS = str(Path(sys.executable).with_name("govbus"))


async def govbus(*args: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    proc = await asyncio.create_subprocess_exec(
        GOVBUS, *args, env={**clean, "COLUMNS": "200"}, stdout=-1, stderr=-1
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_tour_on_rabbitmq_and_cli_tables(vhost_url, tmp_path):
    async with edge_stack(vhost_url, tmp_path) as stack:
        c, h = stack.client, stack.headers
        async with (
            asyncio.timeout(30),
            c.request("/v1/events?types=resource.*", headers=h) as stream,
        ):
            await stream.send_complete()
            r = await c.post(
                "/v1/instances",
                headers=h,
                json={
                    "service": "host",
                    "instance_id": "host-1",
                    "address": "10.0.0.5",
                    "port": 22,
                    "tags": ["ssd"],
                },
            )
            assert r.status_code == 202

            async def picked():
                r = await c.get("/v1/services/host/pick", headers=h)
                return r if r.status_code == 200 else None

            r = await eventually(picked, interval=0.01, what="host-1 to be picked")
            assert (await r.get_json())["instance_id"] == "host-1"
            vm = {
                "kind": "vm",
                "name": "web-1",
                "vcpus": 2,
                "memory_mb": 2048,
                "image": "debian-12",
            }
            r = await c.post("/v1/resources", headers=h, json=vm)
            assert r.status_code == 201, await r.get_data()
            assert (await r.get_json())["host"] == "host-1"
            seen = b""
            while b"event: resource.created" not in seen:
                seen += await asyncio.wait_for(stream.receive(), 5)
            frame = seen.split(b"event: resource.created\ndata: ", 1)[1].split(b"\n", 1)[0]
            assert orjson.loads(frame)["data"]["resource"]["name"] == "web-1"
            await stream.disconnect()

        code, out, err = await govbus("services", "--url", vhost_url)
        assert code == 0, err
        assert "host" in out and "services (index" in out
        code, out, err = await govbus("services", "host", "--url", vhost_url)
        assert code == 0, err
        assert "host-1" in out and "10.0.0.5:22" in out and "ssd" in out
        code, out, err = await govbus("resources", "--kind", "vm", "--url", vhost_url)
        assert code == 0, err
        assert "web-1" in out and "vcpus=2" in out
        code, out, err = await govbus("resources", "--json", "--url", vhost_url)
        assert [r["name"] for r in orjson.loads(out)["items"]] == ["web-1"]
        code, out, err = await govbus("services", "NOT*OK", "--url", vhost_url)
        assert code == 2 and "bad service name" in err and len(err.strip().splitlines()) == 1


async def test_no_workers_on_rabbitmq_is_503_and_unreachable_cli_is_one_line(vhost_url, tmp_path):
    async with edge_stack(vhost_url, tmp_path, workers=()) as stack:
        r = await stack.client.get("/v1/resources", headers=stack.headers)
        assert r.status_code == 503 and "Retry-After" in r.headers
    code, _, err = await govbus("services", "--url", "amqp://guest:guest@127.0.0.1:1/")
    assert code == 1 and err.startswith("govbus: error:") and len(err.strip().splitlines()) == 1
