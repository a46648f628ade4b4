"""`GOVBUS_CORS_ORIGINS`: a browser page on a listed origin may call the edge; no other may."""

from __future__ import annotations

import pytest

from bus.settings import load_settings
from tests._edge_stack import SECRET, bearer, edge_stack

APP = "https://app.example"
OTHER = "https://evil.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "PATCH",
    "Access-Control-Request-Headers": "authorization, content-type, if-match",
}


@pytest.fixture
async def stack(tmp_path, unique):
    settings = load_settings(auth_secret=SECRET, cors_origins=f"{APP}, http://localhost:3000")
    async with edge_stack(f"memory://{unique}", tmp_path, settings=settings) as s:
        yield s


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def listed(header: str) -> set[str]:
    return {part.strip().lower() for part in header.split(",")}


async def test_a_preflight_from_a_listed_origin_is_answered(stack):
    r = await stack.client.options("/v1/resources/web-1", headers={"Origin": APP, **PREFLIGHT})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert "patch" in listed(r.headers["Access-Control-Allow-Methods"])
    assert {"authorization", "content-type", "if-match"} <= listed(
        r.headers["Access-Control-Allow-Headers"]
    )
    assert "origin" in listed(r.headers["Vary"])
    assert int(r.headers["Access-Control-Max-Age"]) > 0


async def test_responses_to_a_listed_origin_carry_cors_headers_even_errors(stack):
    origin = "http://localhost:3000"
    r = await stack.client.get("/v1/services", headers={"Origin": origin, **bearer()})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == origin
    exposed = listed(r.headers["Access-Control-Expose-Headers"])
    assert {"etag", "x-govbus-index", "x-govbus-protection", "retry-after", "location"} <= exposed
    assert "origin" in listed(r.headers["Vary"])
    # a refusal too, so the page can read the problem and its challenge
    r = await stack.client.get("/v1/services", headers={"Origin": APP})
    assert r.status_code == 401
    assert r.headers["Access-Control-Allow-Origin"] == APP
    assert "www-authenticate" in listed(r.headers["Access-Control-Expose-Headers"])


async def test_an_unlisted_origin_gets_no_cors_headers(stack):
    r = await stack.client.options("/v1/resources/web-1", headers={"Origin": OTHER, **PREFLIGHT})
    assert cors_headers(r) == {}
    r = await stack.client.get("/v1/services", headers={"Origin": OTHER, **bearer()})
    assert r.status_code == 200  # the edge answers; the browser keeps it from the page
    assert cors_headers(r) == {}
    # an origin is compared whole: scheme, host and port
    for near in ("http://app.example", "https://app.example:8443", "https://app.example.evil"):
        r = await stack.client.get("/v1/services", headers={"Origin": near, **bearer()})
        assert cors_headers(r) == {}, near


async def test_without_the_setting_no_origin_gets_cors_headers(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path, workers=("discovery",)) as s:
        r = await s.client.options("/v1/resources/web-1", headers={"Origin": APP, **PREFLIGHT})
        assert cors_headers(r) == {}
        r = await s.client.get("/v1/services", headers={"Origin": APP, **bearer()})
        assert cors_headers(r) == {}
