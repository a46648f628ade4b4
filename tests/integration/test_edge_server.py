"""`EdgeServer` on uvicorn: the process keeps its signals, the app's lifespan runs once, a taken
port is one `ConfigError`, IPv6 addresses listen, and every process runs on uvloop."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket

import httpx
import pytest
from quart import Quart

from bus.errors import BusError, ConfigError
from bus.process import run_process
from bus.settings import load_settings
from http_edge import create_app
from http_edge.server import EdgeServer
from tests._wait import eventually


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def counting_edge(unique: str, http: str) -> tuple[Quart, dict[str, int]]:
    """The edge's app on its own embedded bus, counting its lifespan's runs."""
    settings = load_settings(url=f"memory://{unique}", auth="disabled", http=http)
    app = create_app(settings=settings)
    counts = {"before": 0, "after": 0}

    @app.before_serving
    async def before() -> None:
        counts["before"] += 1

    @app.after_serving
    async def after() -> None:
        counts["after"] += 1

    return app, counts


async def test_ipv6_serves_with_one_lifespan_and_the_process_keeps_its_signals(unique):
    port = free_port("::1")
    app, counts = counting_edge(unique, f"[::1]:{port}")
    settings = load_settings(http=f"[::1]:{port}")
    exits: list[bool] = []
    sigterm, sigint = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    server = EdgeServer(app, settings, on_exit=lambda: exits.append(True))
    await server.start()
    async with httpx.AsyncClient(timeout=5) as client:

        async def hello() -> httpx.Response | None:
            try:
                return await client.get(f"http://[::1]:{port}/hello")
            except httpx.ConnectError:
                return None

        r = await eventually(hello, what="the edge to listen on [::1]")
    assert (r.status_code, r.text) == (200, "Hello World!")
    assert server.ready
    # uvicorn installed no handler of its own: SIGTERM/SIGINT stay the process's
    assert signal.getsignal(signal.SIGTERM) is sigterm
    assert signal.getsignal(signal.SIGINT) is sigint
    await server.stop()
    assert counts == {"before": 1, "after": 1}
    await eventually(lambda: exits == [True], what="on_exit after stop")
    assert not server.ready


async def test_a_port_taken_after_the_check_is_one_config_error(unique):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        app, counts = counting_edge(unique, f"127.0.0.1:{port}")
        exits: list[bool] = []
        server = EdgeServer(
            app, load_settings(http=f"127.0.0.1:{port}"), on_exit=lambda: exits.append(True)
        )
        await server.start()
        # the failed server ends by itself, and says so: the process stops with it
        await eventually(lambda: exits == [True], what="on_exit after the failed bind")
        with pytest.raises(ConfigError) as caught:
            await server.stop()
    assert str(caught.value) == (
        f"GOVBUS_HTTP: cannot listen on 127.0.0.1:{port}: Address already in use"
    )
    assert counts == {"before": 0, "after": 0}


async def test_the_edge_raises_its_open_files_limit_for_its_watchers(unique):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = len(os.listdir("/proc/self/fd")) + 256  # room for what this test opens
    assert hard > low, "the hard limit leaves nothing to raise"
    port = free_port()
    app, _ = counting_edge(unique, f"127.0.0.1:{port}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))
    try:
        server = EdgeServer(app, load_settings(http=f"127.0.0.1:{port}"))
        await server.start()
        await eventually(lambda: resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard)
        await server.stop()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_failed_startup_is_one_error_naming_its_reason(unique):
    port = free_port()
    app, _ = counting_edge(unique, f"127.0.0.1:{port}")

    @app.before_serving
    async def refuse() -> None:
        raise BusError("the broker went away")

    exits: list[bool] = []
    server = EdgeServer(
        app, load_settings(http=f"127.0.0.1:{port}"), on_exit=lambda: exits.append(True)
    )
    await server.start()
    await eventually(lambda: exits == [True], what="on_exit after the failed startup")
    with pytest.raises(BusError) as caught:
        await server.stop()
    assert str(caught.value) == "the edge did not start: the broker went away"


def test_a_process_runs_on_uvloop():
    async def main(stop: asyncio.Event) -> str:
        return type(asyncio.get_running_loop()).__module__

    assert run_process(main).startswith("uvloop")
