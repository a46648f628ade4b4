"""The edge benchmark's load generator, run as its own process:

    python -m benchmarks._httpload URL TOKEN SEQUENTIAL CONCURRENT CONCURRENCY

GETs URL `SEQUENTIAL` times one after another (latency), then `CONCURRENT` times with
`CONCURRENCY` requests in flight (throughput); prints one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from benchmarks._common import percentile


async def main(url: str, token: str, sequential: int, concurrent: int, concurrency: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=10) as client:
        for _ in range(20):
            (await client.get(url)).raise_for_status()
        latencies = []
        for _ in range(sequential):
            began = time.perf_counter()
            response = await client.get(url)
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
        counter = iter(range(concurrent))
        failures = 0

        async def lane() -> None:
            nonlocal failures
            for _ in counter:
                response = await client.get(url)
                failures += response.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    print(
        json.dumps(
            {
                "per_s": concurrent / elapsed,
                "p50_ms": percentile(latencies, 50) * 1000,
                "p99_ms": percentile(latencies, 99) * 1000,
                "failures": failures,
            }
        )
    )


if __name__ == "__main__":
    u, t, s, c, n = sys.argv[1:6]
    asyncio.run(main(u, t, int(s), int(c), int(n)))
