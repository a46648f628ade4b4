"""The edge through real workers on the embedded bus: every route, its status codes and shapes."""

from __future__ import annotations

import asyncio
import time

import jwt
import orjson
import pytest

from http_edge import Limits
from tests._edge_stack import BOTH, SECRET, bearer, bus_url, edge_stack
from tests._wait import eventually

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"


def register_body(service: str, instance_id: str, port: int = 8000, **extra):
    return {
        "service": service,
        "instance_id": instance_id,
        "address": "10.0.0.1",
        "port": port,
        **extra,
    }


async def wait_listed(client, headers, service: str, count: int = 1):
    async def listed():
        r = await client.get(f"/v1/services/{service}", headers=headers)
        return r.status_code == 200 and len((await r.get_json())["instances"]) >= count

    await eventually(listed, interval=0.01, what=f"{service} to list {count} instance(s)")


@pytest.fixture
async def stack(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path) as s:
        yield s


@pytest.fixture(params=BOTH)
async def both_stack(request, tmp_path, unique):
    """The same test on the embedded bus and on RabbitMQ (a vhost of its own)."""
    async with edge_stack(bus_url(request, unique), tmp_path) as s:
        yield s


async def test_public_routes_need_no_token(stack):
    for path, expected in (("/", b"Hello World!"), ("/hello", b"Hello World!")):
        r = await stack.client.get(path)
        assert r.status_code == 200
        assert await r.get_data() == expected
    assert (await stack.client.get("/healthz")).status_code == 200
    r = await stack.client.get("/readyz")
    assert r.status_code == 200 and (await r.get_json())["status"] == "ready"


async def test_register_pick_heartbeat_drain_deregister(both_stack):
    c, h = both_stack.client, both_stack.headers
    r = await c.post("/v1/instances", headers=h, json=register_body("web", "web-1", tags=["v1"]))
    assert r.status_code == 202
    accepted = await r.get_json()
    assert accepted["type"] == "registry.register" and accepted["instance_id"] == "web-1"
    await c.post("/v1/instances", headers=h, json=register_body("web", "web-2", port=8001))
    await wait_listed(c, h, "web", 2)

    r = await c.get("/v1/services/web", headers=h)
    view = await r.get_json()
    assert set(view) >= {"service", "index", "protection", "instances"}
    assert {i["instance_id"] for i in view["instances"]} == {"web-1", "web-2"}
    first = next(i for i in view["instances"] if i["instance_id"] == "web-1")
    assert first["tags"] == ["v1"] and first["address"] == "10.0.0.1" and first["port"] == 8000
    assert r.headers["X-Govbus-Index"] == str(view["index"])

    r = await c.get("/v1/services/web?tag=v1", headers=h)
    assert [i["instance_id"] for i in (await r.get_json())["instances"]] == ["web-1"]

    r = await c.get("/v1/services", headers=h)
    summary = await r.get_json()
    assert any(s["service"] == "web" and s["instances"] == 2 for s in summary["services"])

    picked = set()
    for _ in range(4):
        r = await c.get("/v1/services/web/pick?strategy=round_robin", headers=h)
        assert r.status_code == 200
        picked.add((await r.get_json())["instance_id"])
    assert picked == {"web-1", "web-2"}

    # a heartbeat without `service`: the edge looks the instance up
    r = await c.put(
        "/v1/instances/web-1/heartbeat", headers=h, json={"status": "passing", "load": 0.5}
    )
    assert r.status_code == 202 and (await r.get_json())["type"] == "registry.heartbeat"

    r = await c.put("/v1/instances/web-2/heartbeat", headers=h)  # no body at all: passing
    assert r.status_code == 202
    r = await c.put("/v1/instances/web-2/drain", headers=h)
    assert r.status_code == 202

    async def drained():
        r = await c.get("/v1/services/web", headers=h)
        statuses = {i["instance_id"]: i["status"] for i in (await r.get_json())["instances"]}
        return statuses.get("web-2") == "draining"

    await eventually(drained, interval=0.01, what="web-2 to drain")
    for _ in range(3):
        r = await c.get("/v1/services/web/pick", headers=h)
        assert (await r.get_json())["instance_id"] == "web-1"

    r = await c.delete("/v1/instances/web-2?service=web", headers=h)
    assert r.status_code == 202

    async def only_web_1_left():
        r = await c.get("/v1/services/web", headers=h)
        return [i["instance_id"] for i in (await r.get_json())["instances"]] == ["web-1"]

    await eventually(only_web_1_left, interval=0.01, what="web-2 to leave")


async def test_unknown_things_are_404_problems(stack):
    c, h = stack.client, stack.headers
    for path in (
        "/v1/services/nothing",
        "/v1/resources/nothing",
        "/resource/nothing",
        "/v1/no-such-route",
    ):
        r = await c.get(path, headers=h)
        assert r.status_code == 404, path
        assert r.content_type == PROBLEM
        body = await r.get_json()
        assert body["status"] == 404 and body["detail"]
    r = await c.put("/v1/instances/ghost-1/heartbeat", headers=h, json={})
    assert r.status_code == 404
    # picking from a service nobody registered is 404, many times over, and does not open
    # the breaker for the picks of other services
    for _ in range(8):
        r = await c.get("/v1/services/nothing/pick", headers=h)
        assert r.status_code == 404
    await c.post("/v1/instances", headers=h, json=register_body("web", "web-1"))
    await wait_listed(c, h, "web")
    assert (await c.get("/v1/services/web/pick", headers=h)).status_code == 200
    # every instance draining: 503, worth a retry later
    await c.put("/v1/instances/web-1/drain", headers=h)

    async def picked():
        r = await c.get("/v1/services/web/pick", headers=h)
        return r if r.status_code == 503 else None

    r = await eventually(picked, interval=0.01, what="a pick of an all-draining service to be 503")
    assert r.status_code == 503 and "Retry-After" in r.headers


async def test_resource_lifecycle_with_etags(both_stack):
    c, h = both_stack.client, both_stack.headers
    spec = {"kind": "network", "name": "net-a", "cidr": "10.1.0.0/24", "labels": {"team": "a"}}
    r = await c.post("/v1/resources", headers=h, json=spec)
    assert r.status_code == 201, await r.get_data()
    created = await r.get_json()
    assert created["name"] == "net-a" and created["kind"] == "network"
    assert {"id", "status", "version", "created_at", "updated_at"} <= set(created)
    assert r.headers["ETag"] == f'"{created["version"]}"'
    assert r.headers["Location"] == "/v1/resources/net-a"

    r = await c.post("/v1/resources", headers=h, json=spec)
    assert r.status_code == 409 and r.content_type == PROBLEM

    r = await c.get("/v1/resources/net-a", headers=h)
    assert r.status_code == 200 and r.headers["ETag"] == f'"{created["version"]}"'
    assert (await c.get("/resource/net-a", headers=h)).status_code == 200

    r = await c.patch(
        "/v1/resources/net-a",
        headers={**h, "If-Match": r.headers["ETag"]},
        json={"labels": {"team": "b"}},
    )
    assert r.status_code == 200, await r.get_data()
    updated = await r.get_json()
    assert updated["labels"] == {"team": "b"} and updated["version"] > created["version"]

    r = await c.patch(
        "/v1/resources/net-a",
        headers={**h, "If-Match": f'"{created["version"]}"'},
        json={"labels": {"team": "c"}},
    )
    assert r.status_code == 409, await r.get_data()

    r = await c.patch("/v1/resources/net-a", headers=h, json={"vcpus": 4})
    assert r.status_code == 422  # not a field of a network

    r = await c.get("/v1/resources?kind=network&label=team=b", headers=h)
    page = await r.get_json()
    assert [i["name"] for i in page["items"]] == ["net-a"] and page["next"] is None
    r = await c.get("/resource", headers=h)
    assert [i["name"] for i in await r.get_json()] == ["net-a"]

    r = await c.delete("/v1/resources/net-a", headers=h)
    assert r.status_code == 200, await r.get_data()


async def test_vm_is_placed_on_a_registered_host(stack):
    c, h = stack.client, stack.headers
    r = await c.post(
        "/v1/resources",
        headers=h,
        json={"kind": "vm", "name": "vm-0", "vcpus": 1, "memory_mb": 512, "image": "debian-12"},
    )
    assert r.status_code == 503 and "Retry-After" in r.headers  # no host yet
    await c.post("/v1/instances", headers=h, json=register_body("host", "host-1"))
    await wait_listed(c, h, "host")
    r = await c.post(
        "/v1/resources",
        headers=h,
        json={"kind": "vm", "name": "web-1", "vcpus": 2, "memory_mb": 2048, "image": "debian-12"},
    )
    assert r.status_code == 201, await r.get_data()
    assert (await r.get_json())["host"] == "host-1"


BAD_PATHS = [
    "/v1/services/we%23b",  # '#'
    "/v1/services/we*b",
    "/v1/services/" + "a" * 64,
    "/v1/services/UPPER",
    "/v1/resources/" + "x" * 300,
    "/v1/resources/a%00b",
]


async def test_bad_input_is_4xx_and_nothing_is_published(stack):
    c, h = stack.client, stack.headers
    published = stack.bus.publisher.published
    for path in BAD_PATHS:
        r = await c.get(path, headers=h)
        assert r.status_code in (400, 422), (path, r.status_code)
        assert r.content_type == PROBLEM
        assert (await r.get_json())["errors"][0]["field"].startswith("path.")
    cases = [
        ({"data": b"{not json", "headers": {**h, "Content-Type": "application/json"}}, 400),
        (
            {
                "data": b"service=web",
                "headers": {**h, "Content-Type": "application/x-www-form-urlencoded"},
            },
            415,
        ),
        ({"json": [1, 2], "headers": h}, 422),
        ({"json": register_body("web", "web-9", admin=True), "headers": h}, 422),
        ({"json": register_body("web", "web-9", port=70000), "headers": h}, 422),
        ({"json": register_body("w#b", "web-9"), "headers": h}, 422),
        (
            {"data": b"[" * 10 + b"]" * 10, "headers": {**h, "Content-Type": "application/json"}},
            422,
        ),
        (
            {
                "data": b'{"a":"' + b"x" * (1024 * 1024 + 10) + b'"}',
                "headers": {**h, "Content-Type": "application/json"},
            },
            413,
        ),
    ]
    for kwargs, status in cases:
        r = await c.post("/v1/instances", **kwargs)
        assert r.status_code == status, (kwargs.get("json"), r.status_code, await r.get_data())
        assert r.content_type == PROBLEM
    r = await c.post("/v1/instances", headers=h, json=register_body("web", "web-9", port=70000))
    assert (await r.get_json())["errors"][0]["field"] == "body.port"
    for query in ("limit=0", "limit=501", "kind=disk", "label=nokey", "bogus=1"):
        r = await c.get(f"/v1/resources?{query}", headers=h)
        assert r.status_code == 422, query
        assert (await r.get_json())["errors"][0]["field"].startswith("query.")
    r = await c.patch("/v1/resources/x", headers={**h, "If-Match": "nope"}, json={"labels": {}})
    assert r.status_code == 400
    r = await c.post(
        "/v1/resources",
        headers=h,
        json={
            "kind": "vm",
            "name": "a",
            "vcpus": 1,
            "memory_mb": 512,
            "image": "x",
            "status": "active",
        },
    )
    assert r.status_code == 422  # no mass assignment of stored fields
    r = await c.post("/v1/resources", headers=h, json={"kind": "disk", "name": "a"})
    assert r.status_code == 422
    r = await c.delete("/v1/services", headers=h)
    assert r.status_code == 405 and r.content_type == PROBLEM
    assert stack.bus.publisher.published == published


async def test_tokens_and_scopes(stack):
    c = stack.client
    r = await c.get("/v1/services")
    assert r.status_code == 401 and r.content_type == PROBLEM
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    for header in ("Bearer", "Bearer not.a.jwt", "Basic Zm9vOmJhcg==", "Bearer " + "a" * 9000):
        r = await c.get("/v1/services", headers={"Authorization": header})
        assert r.status_code == 401, header
    expired = jwt.encode(
        {"iss": "govbus", "exp": int(time.time()) - 60, "scope": "registry:read"},
        SECRET,
        algorithm="HS256",
    )
    r = await c.get("/v1/services", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in (await r.get_json())["detail"]
    forged = jwt.encode(
        {"iss": "govbus", "exp": int(time.time()) + 60, "scope": "registry:read"},
        "another-secret-" + "z" * 32,
        algorithm="HS256",
    )
    r = await c.get("/v1/services", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    none_alg = jwt.encode(
        {"iss": "govbus", "exp": int(time.time()) + 60, "scope": "registry:read"},
        None,
        algorithm="none",
    )
    r = await c.get("/v1/services", headers={"Authorization": f"Bearer {none_alg}"})
    assert r.status_code == 401

    r = await c.get("/v1/services", headers=bearer("resources:read"))
    assert r.status_code == 403 and "registry:read" in (await r.get_json())["detail"]
    r = await c.post(
        "/v1/instances", headers=bearer("registry:read"), json=register_body("web", "web-1")
    )
    assert r.status_code == 403
    r = await c.get("/v1/resources", headers=bearer("resources:read"))
    assert r.status_code == 200


async def test_sse_streams_filtered_events_with_keepalive(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path, limits=Limits(keepalive_s=0.05)) as stack:
        c, h = stack.client, stack.headers
        async with (
            asyncio.timeout(30),
            c.request("/v1/events?types=registry.instance.*", headers=h) as conn,
        ):
            await conn.send_complete()
            await c.post("/v1/instances", headers=h, json=register_body("web", "web-1"))
            seen = b""
            for _ in range(200):
                seen += await asyncio.wait_for(conn.receive(), 5)
                if b"event: registry.instance.registered" in seen and b": keep-alive" in seen:
                    break
            assert conn.status_code == 200
            assert conn.headers["Content-Type"].startswith("text/event-stream")
            frame = next(
                f for f in seen.split(b"\n\n") if b"event: registry.instance.registered" in f
            )
            data = orjson.loads(frame.split(b"data: ", 1)[1])
            assert data["type"] == "registry.instance.registered" and data["specversion"] == "1.0"
            assert b"event: registry.register\n" not in seen  # filtered out by the pattern
            assert stack.app.extensions["govbus"].streams == 1
            await conn.disconnect()
        await eventually(lambda: stack.app.extensions["govbus"].streams == 0, what="stream closed")
        r = await c.get("/v1/events?types=a..b", headers=h)
        assert r.status_code == 422


async def test_no_worker_is_503_with_retry_after_and_slow_worker_is_504(tmp_path, unique):
    async with edge_stack(
        f"memory://{unique}", tmp_path, workers=(), limits=Limits(rpc_timeout_s=0.2)
    ) as stack:
        c, h = stack.client, stack.headers
        r = await c.get("/v1/services", headers=h)
        assert r.status_code == 503 and r.content_type == PROBLEM
        assert int(r.headers["Retry-After"]) >= 1
        r = await c.post("/v1/instances", headers=h, json=register_body("web", "web-1"))
        assert r.status_code == 503  # nobody subscribes: the event would be lost
        # a worker that never answers
        from bus.rpc import Method
        from schemas.rpc import ServicesRequest

        async def hang(_req):
            await asyncio.sleep(1)  # longer than the edge's RPC timeout: the slowness is the point

        from bus.client import Bus

        async with Bus(stack.url, source="slow") as slow:
            await slow.serve("slowdiscovery", {"discovery.services": Method(ServicesRequest, hang)})
            r = await c.get("/v1/services", headers=h)
            assert r.status_code == 504 and r.content_type == PROBLEM
            await slow.close()
        # enough failures open the breaker: then 503 at once, with Retry-After
        for _ in range(6):
            r = await c.get("/v1/services", headers=h)
        assert r.status_code == 503 and "circuit" in (await r.get_json())["type"]
        assert int(r.headers["Retry-After"]) >= 1


async def test_metrics_and_openapi(stack):
    c, h = stack.client, stack.headers
    await c.get("/v1/services", headers=h)
    r = await c.get("/metrics")
    text = (await r.get_data()).decode()
    assert r.status_code == 200
    assert 'govbus_http_requests_total{method="GET",route="/v1/services",status="200"} 1.0' in text
    assert 'govbus_rpc_seconds_bucket{le="0.005",method="discovery.services",outcome="ok"}' in text
    assert "govbus_registry_instances 0.0" in text
    assert "govbus_inventory_resources 0.0" in text
    assert "govbus_events_published_total" in text
    assert 'govbus_events_consumed_total{queue="govbus.discovery"}' in text
    assert 'govbus_events_dead_lettered_total{queue="govbus.manager"} 0.0' in text
    r = await c.get("/openapi.json")
    doc = await r.get_json()
    assert doc["openapi"].startswith("3.")
    assert {"/v1/services/{name}/pick", "/v1/resources/{name}", "/v1/events"} <= set(doc["paths"])
    assert "RegisterBody" in doc["components"]["schemas"]
    assert (await c.get("/docs")).status_code == 200


async def test_traceparent_travels_into_events(stack):
    c, h = stack.client, stack.headers
    trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with (
        asyncio.timeout(30),
        c.request("/v1/events?types=registry.register", headers=h) as conn,
    ):
        await conn.send_complete()
        await c.post(
            "/v1/instances", headers={**h, "traceparent": trace}, json=register_body("web", "web-1")
        )
        seen = b""
        while b"registry.register" not in seen.split(b"\n", 1)[-1]:
            seen += await asyncio.wait_for(conn.receive(), 5)
        await conn.disconnect()
    line = seen.split(b"data: ", 1)[1].split(b"\n", 1)[0]
    assert orjson.loads(line)["traceparent"].startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")


async def test_traceparent_travels_into_rpc_requests(tmp_path, unique):
    from bus.topology import RPC
    from bus.transport import QueueSpec

    limits = Limits(rpc_timeout_s=0.3)
    async with edge_stack(f"memory://{unique}", tmp_path, workers=(), limits=limits) as stack:
        transport = stack.bus.transport
        seen = []
        await transport.declare_queue(QueueSpec("spy", durable=False, auto_delete=True))
        await transport.bind("spy", RPC, "discovery.services")
        await transport.consume("spy", seen.append, prefetch=10)
        trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        r = await stack.client.get("/v1/services", headers={**stack.headers, "traceparent": trace})
        assert r.status_code == 504  # the spy never answers
        await eventually(lambda: seen, what="the request")
        header = seen[0].message.headers["traceparent"]
        header = header.decode() if isinstance(header, bytes) else header
        assert header.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        assert header != trace  # a new span of the same trace


async def test_clients_leaving_while_events_flow_leave_nothing_behind(stack):
    c, h = stack.client, stack.headers
    state = stack.app.extensions["govbus"]
    body = register_body("web", "web-1")

    async def traffic(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await c.put("/v1/instances/web-1/heartbeat", headers=h, json={"service": "web"})

    await c.post("/v1/instances", headers=h, json=body)
    stop = asyncio.Event()
    flowing = asyncio.create_task(traffic(stop))
    try:
        async with asyncio.timeout(30):
            for _ in range(20):
                async with c.request("/v1/events?types=registry.*", headers=h) as conn:
                    await conn.send_complete()
                    await conn.receive()
                    await conn.disconnect()
    finally:
        stop.set()
        await flowing
    await eventually(lambda: state.streams == 0, what="every stream closed")
