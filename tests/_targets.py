"""Real local targets for health checks: an HTTP server that answers as asked, and ports.

`Targets` serves, on 127.0.0.1 and a free port:
`/status/<code>` that code; `/hang` never answers; `/redirect` redirects to itself forever;
`/big` streams 10 MB slowly (`big_sent` counts what went out); `/script/<name>` answers the
codes queued in `scripts[name]`, then 200; `/hit/<name>` 200, counting each hit with its time
in `hits[name]` and its `User-Agent` in `agents[name]`. `reset_port()` is a TCP server that
resets every connection; `closed_port()` is a port nothing listens on.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import defaultdict
from typing import Any

from aiohttp import web


class Targets:
    def __init__(self) -> None:
        self.hits: defaultdict[str, list[float]] = defaultdict(list)
        self.agents: defaultdict[str, list[str]] = defaultdict(list)
        self.scripts: dict[str, list[int]] = {}
        self.big_sent = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self._servers: list[asyncio.Server] = []

    async def __aenter__(self) -> Targets:
        app = web.Application()
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/hang", self._hang)
        app.router.add_get("/redirect", self._redirect)
        app.router.add_get("/big", self._big)
        app.router.add_get("/script/{name}", self._script)
        app.router.add_get("/hit/{name}", self._hit)
        self._runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for server in self._servers:
            server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def reset_port(self) -> int:
        """A TCP server that accepts and at once resets (RST) every connection."""

        def reset(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server = await asyncio.start_server(reset, "127.0.0.1", 0)
        self._servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    @staticmethod
    def closed_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    async def _status(self, request: web.Request) -> web.Response:
        code = int(request.match_info["code"])
        return web.Response(status=code, text=f"answered {code}")

    async def _hang(self, request: web.Request) -> web.Response:
        await asyncio.Event().wait()
        raise AssertionError("never")

    async def _redirect(self, request: web.Request) -> web.Response:
        raise web.HTTPFound("/redirect")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 10 * 1024 * 1024
        await response.prepare(request)
        chunk = b"x" * 65536
        for _ in range(160):
            await response.write(chunk)
            self.big_sent += len(chunk)
            await asyncio.sleep(0.005)  # paced, so a client that stopped reading is noticed
        return response

    async def _script(self, request: web.Request) -> web.Response:
        queued = self.scripts.get(request.match_info["name"], [])
        code = queued.pop(0) if queued else 200
        self.hits[request.match_info["name"]].append(time.monotonic())
        return web.Response(status=code, text=f"scripted {code}")

    async def _hit(self, request: web.Request) -> web.Response:
        self.hits[request.match_info["name"]].append(time.monotonic())
        self.agents[request.match_info["name"]].append(request.headers.get("User-Agent", ""))
        return web.Response(text="ok")
