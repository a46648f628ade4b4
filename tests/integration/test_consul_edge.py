"""Consul's reads on the edge in front of a real discovery worker (embedded bus): the
datacenter, node-meta filters, a blocking read longer than the request timeout, maintenance,
and Consul's 403 for tokens where govbus's own routes keep 401."""

from __future__ import annotations

from bus.settings import load_settings
from http_edge import Limits
from tests._edge_stack import SECRET, edge_stack, token
from tests._wait import eventually


async def register(client, instance_id: str, meta: dict[str, str]) -> None:
    body = {"Name": "api", "ID": instance_id, "Port": 80, "Address": "10.9.0.1", "Meta": meta}
    headers = {"X-Consul-Token": token()}
    r = await client.put("/v1/agent/service/register", json=body, headers=headers)
    assert r.status_code == 200, await r.get_data()


async def test_consul_reads_on_the_edge(tmp_path, unique):
    consul = {"X-Consul-Token": token()}  # minted now: the suite may run longer than its TTL
    settings = load_settings(auth_secret=SECRET, datacenter="east")
    limits = Limits(request_timeout_s=0.3)
    async with edge_stack(f"memory://{unique}", tmp_path, settings=settings, limits=limits) as s:
        client = s.client
        await register(client, "api-1", {"rack": "r1"})
        await register(client, "api-2", {"rack": "r2"})

        async def both() -> bool:
            r = await client.get("/v1/catalog/service/api", headers=consul)
            return len(await r.get_json()) == 2

        await eventually(both, interval=0.01, what="both instances to register")

        # agent/self is public: py-consul asks it without its token
        self_ = await (await client.get("/v1/agent/self")).get_json()
        assert self_["Config"]["Datacenter"] == "east"
        r = await client.get("/v1/catalog/services?dc=dc1", headers=consul)
        assert r.status_code == 404 and "'east'" in (await r.get_json())["detail"]
        assert r.headers["X-Consul-KnownLeader"] == "true"
        r = await client.get("/v1/catalog/services?dc=EAST", headers=consul)
        assert r.status_code == 200  # datacenter names are case-blind, as DNS names
        # A filter expression is not honoured: said, never silently ignored.
        r = await client.get('/v1/agent/services?filter=Service=="api"', headers=consul)
        assert r.status_code == 422 and r.headers["X-Consul-Index"]
        assert [e["field"] for e in (await r.get_json())["errors"]] == ["query.filter"]
        # These instances have no TTL check: passing one is a 404, not a silent 200.
        r = await client.put("/v1/agent/check/pass/service:api-1", headers=consul)
        assert r.status_code == 404 and "has none" in (await r.get_json())["detail"]

        r = await client.get("/v1/catalog/services?node-meta=rack:r2", headers=consul)
        assert await r.get_json() == {"api": []}
        r = await client.get("/v1/catalog/services?node-meta=rack:r9", headers=consul)
        assert await r.get_json() == {}
        r = await client.get("/v1/health/state/any?node-meta=rack:r1", headers=consul)
        assert [c["ServiceID"] for c in await r.get_json()] == ["api-1"]
        r = await client.get("/v1/health/state/bogus", headers=consul)
        assert r.status_code == 422
        r = await client.get("/v1/agent/services", headers=consul)
        assert sorted(await r.get_json()) == ["api-1", "api-2"]
        r = await client.get("/v1/agent/service/api-9", headers=consul)
        assert r.status_code == 404

        # A blocking read waits its `wait` although the request timeout is shorter: unchanged,
        # it answers 200 with the same index (never a 504).
        r = await client.get("/v1/health/service/api", headers=consul)
        index = r.headers["X-Consul-Index"]
        r = await client.get(f"/v1/health/service/api?index={index}&wait=1s", headers=consul)
        assert r.status_code == 200 and r.headers["X-Consul-Index"] == index

        # Maintenance on and off; an unknown instance is a 404; `enable` is required (twice:
        # an empty query string is validated, then remembered, never taken as valid).
        for _ in range(2):
            r = await client.put("/v1/agent/service/maintenance/api-1", headers=consul)
            assert r.status_code == 422
            assert [e["field"] for e in (await r.get_json())["errors"]] == ["query.enable"]
        r = await client.put("/v1/agent/service/maintenance/api-1?enable=true", headers=consul)
        assert r.status_code == 200

        async def checks_of_api_1() -> list[str]:
            r = await client.get("/v1/health/service/api?node-meta=rack:r1", headers=consul)
            return [c["CheckID"] for e in await r.get_json() for c in e["Checks"]]

        await eventually(
            lambda: _is(checks_of_api_1(), ["_service_maintenance:api-1"]),
            interval=0.01,
            what="api-1 to enter maintenance",
        )
        r = await client.put("/v1/agent/service/maintenance/api-1?enable=false", headers=consul)
        assert r.status_code == 200
        await eventually(
            lambda: _is(checks_of_api_1(), ["service:api-1"]),
            interval=0.01,
            what="api-1 to leave maintenance",
        )
        r = await client.put("/v1/agent/service/maintenance/api-9?enable=true", headers=consul)
        assert r.status_code == 404

        # Consul's routes: 403 without a token or with a bad one; govbus's own keep 401.
        for headers in ({}, {"X-Consul-Token": "nope"}):
            r = await client.get("/v1/health/service/api", headers=headers)
            assert r.status_code == 403 and "ACL not found" in (await r.get_json())["detail"]
            r = await client.put("/v1/agent/service/deregister/api-1", headers=headers)
            assert r.status_code == 403
        assert (await client.get("/v1/services/api")).status_code == 401
        scoped = {"X-Consul-Token": token("resources:read")}
        r = await client.get("/v1/catalog/services", headers=scoped)
        assert r.status_code == 403 and "Permission denied" in (await r.get_json())["detail"]


async def _is(values, expected) -> bool:
    return await values == expected
