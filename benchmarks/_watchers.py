"""The edge benchmark's blocking watchers, run as their own process:

    python -m benchmarks._watchers URL TOKEN COUNT TIMEOUT_S

COUNT blocking `GET URL` (URL carries `?index=N&wait=...`), each on its own connection. Prints
`ready` once every request is sent (or answered), then, once all are answered or TIMEOUT_S has
passed, one JSON line: the wall-clock time of each answer, its status and its
`X-Govbus-Index`. The caller knows when it made its change, so it can tell a watcher that heard
it from one that never blocked.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import aiohttp


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(needed, hard), hard))


async def main(url: str, token: str, count: int, timeout_s: float) -> None:
    raise_fd_limit(count + 256)
    sent = 0
    all_sent = asyncio.Event()

    async def on_sent(*_: Any) -> None:
        nonlocal sent
        sent += 1
        if sent >= count:
            all_sent.set()

    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(on_sent)
    answers: list[dict[str, Any]] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    client_timeout = aiohttp.ClientTimeout(total=timeout_s + 30)
    headers = {"Authorization": f"Bearer {token}"}

    async def watch(session: aiohttp.ClientSession) -> None:
        try:
            async with session.get(url) as response:
                await response.read()
                answers.append(
                    {
                        "at": time.time(),
                        "status": response.status,
                        "index": response.headers.get("X-Govbus-Index"),
                    }
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            answers.append({"at": time.time(), "status": 0, "error": repr(exc)})
        if len(answers) >= count:
            all_sent.set()

    async with aiohttp.ClientSession(
        connector=connector, timeout=client_timeout, headers=headers, trace_configs=[trace]
    ) as session:
        tasks = [asyncio.create_task(watch(session)) for _ in range(count)]
        await all_sent.wait()
        print("ready", flush=True)
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
    print(json.dumps({"count": count, "answers": answers, "unanswered": len(pending)}), flush=True)


if __name__ == "__main__":
    u, t, n, s = sys.argv[1:5]
    asyncio.run(main(u, t, int(n), float(s)))
