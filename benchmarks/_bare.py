"""The edge benchmark's ceiling, run as its own process:

    python -m benchmarks._bare BODY_FILE PORT uvicorn|hypercorn

A bare Quart app, no bus, answering `GET /v1/services/<name>` with the bytes of BODY_FILE (the
edge's own answer for 20 instances). `uvicorn` serves it exactly as the edge is served
(`http_edge.server.serving_config`, uvloop); `hypercorn` as the edge was served before, for the
record. It runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from quart import Quart, Response


def bare_app(body: bytes) -> Quart:
    app = Quart("bench.bare")

    @app.get("/v1/services/<name>")
    async def service(name: str) -> Response:
        return Response(body, content_type="application/json")

    return app


def serve_uvicorn(app: Quart, port: int) -> None:
    import uvicorn

    from bus.process import loop_factory
    from http_edge.server import bind, serving_config

    server = uvicorn.Server(serving_config(app))  # its own signal handlers: SIGTERM stops it
    sock = bind(f"127.0.0.1:{port}")
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(server.serve(sockets=[sock]))


def serve_hypercorn(app: Quart, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    asyncio.run(serve(app, config))  # asyncio's loop, as before


if __name__ == "__main__":
    body_file, port, server = sys.argv[1:4]
    bare = bare_app(Path(body_file).read_bytes())
    {"uvicorn": serve_uvicorn, "hypercorn": serve_hypercorn}[server](bare, int(port))
