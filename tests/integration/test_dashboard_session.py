"""The dashboard's files and its session cookie, through the edge's test client (the browser
tests are tests/e2e/test_dashboard.py)."""

from __future__ import annotations

import re

import pytest

from bus.settings import load_settings
from http_edge import Authenticator
from tests._edge_stack import edge_stack, token

REGISTER = {"service": "web", "instance_id": "web-1", "address": "10.0.0.1", "port": 80}


@pytest.fixture
async def stack(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path) as s:
        yield s


async def test_the_page_loads_nothing_from_elsewhere(stack):
    c = stack.client
    r = await c.get("/ui/")
    assert r.status_code == 200 and r.content_type.startswith("text/html")
    page = (await r.get_data()).decode()
    links = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sorted(links) == ["app.js", "data:,", "style.css"]  # relative: works offline
    for asset, media in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = await c.get(f"/ui/{asset}")
        assert r.status_code == 200 and r.content_type.startswith(media)
        text = (await r.get_data()).decode()
        assert "http://" not in text and "https://" not in text
    assert (await c.get("/ui/other.js")).status_code == 422


async def test_a_signed_in_cookie_reads_but_never_writes(stack):
    c = stack.client
    r = await c.get("/ui/session")
    assert (await r.get_json())["signed_in"] is False
    assert (await c.get("/v1/services")).status_code == 401

    good = token("registry:read", "registry:write")
    r = await c.post("/ui/session", json={"token": good})
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith(f"govbus_session={good};")
    attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=strict", "path=/"} <= attributes
    assert not any(a.startswith(("expires", "max-age")) for a in attributes)  # the session only
    session = await r.get_json()
    assert session["signed_in"] is True
    assert session["scopes"] == ["registry:read", "registry:write"]

    # The test client keeps the cookie, as a browser does: reads pass, writes do not.
    assert (await c.get("/v1/services")).status_code == 200
    assert (await c.get("/ui/session")).status_code == 200
    assert (await (await c.get("/ui/session")).get_json())["signed_in"] is True
    r = await c.post("/v1/instances", json=REGISTER)
    assert r.status_code == 401
    # A scope the token lacks is still a 403.
    r = await c.get("/v1/resources")
    assert r.status_code == 403

    r = await c.delete("/ui/session")
    assert r.status_code == 200 and (await r.get_json())["signed_in"] is False
    assert "govbus_session=;" in r.headers["Set-Cookie"]
    assert (await c.get("/v1/services")).status_code == 401


async def test_a_bad_token_is_refused_with_its_reason(stack):
    r = await stack.client.post("/ui/session", json={"token": "nope"})
    assert r.status_code == 401
    assert "invalid token" in (await r.get_json())["detail"]
    assert "Set-Cookie" not in r.headers
    r = await stack.client.post("/ui/session", json={"token": ""})
    assert r.status_code == 422
    assert (await r.get_json())["errors"][0]["field"] == "body.token"


async def test_without_auth_there_is_nothing_to_sign_in_to(tmp_path, unique):
    settings = load_settings(auth="disabled")
    async with edge_stack(
        f"memory://{unique}", tmp_path, settings=settings, auth=Authenticator(enabled=False)
    ) as s:
        session = await (await s.client.get("/ui/session")).get_json()
    assert session["auth"] is False and session["signed_in"] is True
    assert "registry.instance.status_changed" in session["event_types"]
