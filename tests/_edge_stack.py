"""The edge in front of real workers, for edge tests: `edge_stack(url, tmp_path)`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from quart import Quart
from quart.typing import TestClientProtocol

from bus.client import Bus
from bus.settings import Settings, load_settings
from govbus.components import COMPONENTS, running_component
from http_edge import SCOPES, Authenticator, Limits, create_app, mint_token

SECRET = "test-secret-" + "s" * 32

BOTH = ["memory", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)]
"""The params of a fixture that runs each test on the embedded bus and on RabbitMQ."""


def bus_url(request: pytest.FixtureRequest, unique: str) -> str:
    """The bus for a `BOTH` fixture's param: embedded, or a vhost of its own on RabbitMQ."""
    if request.param == "memory":
        return f"memory://{unique}"
    url: str = request.getfixturevalue("vhost_url")
    return url


def token(*scopes: str, ttl_s: int = 300) -> str:
    return mint_token(list(scopes) or list(SCOPES), ttl_s=ttl_s, secret=SECRET)


def bearer(*scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(*scopes)}"}


@dataclass
class Stack:
    app: Quart
    client: TestClientProtocol
    bus: Bus
    url: str
    workers: dict[str, Any]
    headers: dict[str, str]


@contextlib.asynccontextmanager
async def edge_stack(
    url: str,
    tmp_path: Path,
    *,
    workers: tuple[str, ...] = ("discovery", "manager"),
    limits: Limits | None = None,
    settings: Settings | None = None,
    auth: Authenticator | None = None,
    dns: str | None = None,
) -> AsyncIterator[Stack]:
    """Real workers (each on its own SQLite file and connection) and the edge on `url`.

    The edge checks tokens with `auth`, else as `settings` say (default: HS256 with `SECRET`);
    with `dns` (`host:port`, port 0: any) it serves DNS too (`app.extensions["govbus.dns"]`).
    """
    async with contextlib.AsyncExitStack() as stack:
        running = {}
        buses = []
        for name in workers:
            stored = load_settings(db=f"sqlite+aiosqlite:///{tmp_path / name}.db")
            running[name], launch = await stack.enter_async_context(
                running_component(COMPONENTS[name], url, stored)
            )
            buses.append(launch.bus)
        bus = Bus(url, source="govbus/edge")
        await bus.start()
        stack.push_async_callback(bus.close)
        app = create_app(
            bus=bus,
            settings=settings or load_settings(auth_secret=SECRET),
            auth=auth,
            limits=limits,
            observe=buses,
            dns=dns,
        )
        test_app = await stack.enter_async_context(app.test_app())
        yield Stack(app, test_app.test_client(), bus, url, running, bearer())
