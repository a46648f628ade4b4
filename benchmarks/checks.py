"""`checks.http_per_s`: HTTP checks one checker runs per second against a local server.

The checker's `ProbeRunner` (its own loop, in its own thread, as in `govbus checker`) is given
`checks` HTTP checks of `interval_s` 1 s against a local aiohttp server in another process, so
the offered load is `checks` runs a second; the figure is how many it completes per second over
a measured window, over at most `connections` pooled connections, with the CPU time this
process spent per check (the server's is not counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from health_checker.runner import ProbeRunner
from schemas import Check

SERVER = """
from aiohttp import web
async def ok(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/{name}", ok)
web.run_app(app, host="127.0.0.1", port={port}, print=None, access_log=None)
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


async def http_per_s(
    checks: int, seconds: float, log: Callable[[str], None], *, connections: int = 64
) -> dict[str, Any]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER.replace("{port}", str(port))])
    verdicts = {"passing": 0, "other": 0}

    def counted(_key: Any, _check: Check, verdict: tuple[str, str]) -> None:
        verdicts["passing" if verdict[0] == "passing" else "other"] += 1

    runner = ProbeRunner(counted, concurrency=512, connections=connections, name="bench")
    try:
        await _wait_listening(port)
        await runner.start()
        runner.assign(
            {
                (f"i{n}", "check-1"): Check(
                    id="check-1", http=f"http://127.0.0.1:{port}/i{n}", interval_s=1
                )
                for n in range(checks)
            }
        )
        await asyncio.sleep(3)  # warm-up: connections opened, first runs spread out
        runs, cpu, wall = runner.runs, time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        runs = runner.runs - runs
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await runner.stop()
        server.terminate()
        server.wait(timeout=10)
    figures = {
        "http_per_s": round(runs / wall, 1),
        "offered_per_s": checks,
        "cpu_us_per_check": round(cpu / max(runs, 1) * 1e6, 1),
        "connections": connections,
        "failed": verdicts["other"],
    }
    log(f"  checks: {figures}")
    return figures
