"""`GET /v1/history?at=TIME` through the edge, with real workers, on the embedded bus and on
RabbitMQ (where the history follows the `govbus.log` stream of a private vhost)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bus.client import Bus
from bus.history import History
from bus.message import format_time
from bus.settings import load_settings
from bus.topology import LOG
from govbus.components import COMPONENTS, running_component
from govbus.replay import Workers
from http_edge import create_app
from tests._edge_stack import SECRET, bearer, edge_stack
from tests._wait import eventually

PROBLEM = "application/problem+json"


@contextlib.asynccontextmanager
async def history_stack(url: str, tmp_path: Path) -> AsyncIterator[tuple[object, History]]:
    """The workers, a history following the bus, and the edge answering from it."""
    async with contextlib.AsyncExitStack() as stack:
        for name in ("discovery", "manager"):
            stored = load_settings(db=f"sqlite+aiosqlite:///{tmp_path / name}.db")
            await stack.enter_async_context(running_component(COMPONENTS[name], url, stored))
        bus = Bus(url, source="govbus/edge")
        await bus.start()
        stack.push_async_callback(bus.close)
        history = History(f"sqlite+aiosqlite:///{tmp_path}/history.db", Workers, snapshot_every=4)
        await history.start(bus, stream=LOG if bus.transport.keeps_log else None)
        stack.push_async_callback(history.stop)
        app = create_app(bus=bus, settings=load_settings(auth_secret=SECRET), history=history)
        test_app = await stack.enter_async_context(app.test_app())
        yield test_app.test_client(), history


@pytest.fixture(params=["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
async def stack(request, tmp_path, unique):
    if request.param == "memory":
        async with history_stack(f"memory://{unique}", tmp_path) as s:
            yield s
        return
    async with history_stack(request.getfixturevalue("vhost_url"), tmp_path) as s:
        yield s


def instance(instance_id: str) -> dict[str, object]:
    return {"service": "web", "instance_id": instance_id, "address": "10.0.0.1", "port": 80}


async def listed(client, headers) -> list[str]:
    r = await client.get("/v1/services/web", headers=headers)
    if r.status_code != 200:
        return []
    return [i["instance_id"] for i in (await r.get_json())["instances"]]


async def until_listed(client, headers, names: list[str]) -> None:
    """Wait until the registry lists exactly `names` (an HTTP round trip per poll)."""
    seen: list[str] = []

    async def shown() -> bool:
        seen[:] = await listed(client, headers)
        return seen == names

    await eventually(shown, timeout=10, what=lambda: f"{names} listed (listed {seen})")


async def test_history_shows_an_instance_deregistered_since(stack):
    client, history = stack
    h = bearer()
    for name in ("web-1", "web-2"):
        r = await client.post("/v1/instances", headers=h, json=instance(name))
        assert r.status_code == 202
    await until_listed(client, h, ["web-1", "web-2"])
    await eventually(lambda: history.ingested >= 2, timeout=10, what="history kept both")
    between = datetime.now(UTC)

    r = await client.delete("/v1/instances/web-1?service=web", headers=h)
    assert r.status_code == 202
    await until_listed(client, h, ["web-2"])

    r = await client.get(f"/v1/history?at={format_time(between)}", headers=h)
    assert r.status_code == 200, await r.get_data()
    then = await r.get_json()
    assert then["at"] == format_time(between)
    assert [i["instance_id"] for i in then["instances"]] == ["web-1", "web-2"]
    assert then["protection"] == {"on": False, "since": None}
    assert then["resources"] == []

    r = await client.get(
        "/v1/history", query_string={"at": format_time(datetime.now(UTC))}, headers=h
    )
    assert [i["instance_id"] for i in (await r.get_json())["instances"]] == ["web-2"]


async def test_a_moment_before_the_oldest_is_a_404_naming_it(stack):
    client, history = stack
    h = bearer()
    r = await client.get("/v1/history?at=2026-01-01T00:00:00Z", headers=h)
    assert r.status_code == 404 and r.content_type == PROBLEM
    assert "nothing has been recorded yet" in (await r.get_json())["detail"]

    await client.post("/v1/instances", headers=h, json=instance("web-9"))
    await eventually(lambda: history.ingested >= 1, timeout=10, what="one event kept")
    r = await client.get("/v1/history?at=2000-01-01T00:00:00%2B01:00", headers=h)
    assert r.status_code == 404
    problem = await r.get_json()
    oldest = problem["oldest"]
    assert problem["detail"] == (
        f"no history at 1999-12-31T23:00:00.000000Z: the oldest recorded moment is {oldest}"
    )
    # At the oldest moment itself there is history.
    r = await client.get("/v1/history", query_string={"at": oldest}, headers=h)
    assert r.status_code == 200
    assert [i["instance_id"] for i in (await r.get_json())["instances"]] == ["web-9"]


async def test_a_bad_moment_is_a_422_naming_the_field(stack):
    client, _ = stack
    h = bearer()
    for query, says in [
        ("?at=yesterday", "not an RFC 3339 date and time"),
        ("?at=2026-01-01T12:00:00", "no UTC offset"),
        ("?at=9999-12-31T23:59:59-01:00", "out of range"),
        ("", "Field required"),
    ]:
        r = await client.get(f"/v1/history{query}", headers=h)
        assert r.status_code == 422 and r.content_type == PROBLEM
        problem = await r.get_json()
        assert problem["errors"][0]["field"] == "query.at"
        assert says in problem["errors"][0]["message"]


async def test_history_needs_both_read_scopes(tmp_path, unique):
    async with history_stack(f"memory://{unique}", tmp_path) as (client, _):
        at = "?at=2026-01-01T00:00:00Z"
        assert (await client.get(f"/v1/history{at}")).status_code == 401
        for only, lacking in (
            ("registry:read", "resources:read"),
            ("resources:read", "registry:read"),
        ):
            r = await client.get(f"/v1/history{at}", headers=bearer(only))
            assert r.status_code == 403
            assert lacking in (await r.get_json())["detail"]
        r = await client.get(f"/v1/history{at}", headers=bearer("registry:read", "resources:read"))
        assert r.status_code == 404  # allowed; nothing recorded yet


async def test_an_edge_without_history_says_so(tmp_path, unique):
    async with edge_stack(f"memory://{unique}", tmp_path) as s:
        r = await s.client.get("/v1/history?at=2026-01-01T00:00:00Z", headers=s.headers)
    assert r.status_code == 404
    assert (await r.get_json())["detail"] == "this edge keeps no history"
