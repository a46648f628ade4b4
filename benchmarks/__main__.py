"""`python -m benchmarks [--quick] [--json]`: govbus against raw aio-pika and FastStream.

Prints a table with ratios (to stdout; with `--json` the table goes to stderr and stdout gets
one JSON object), and writes `benchmarks/results.json` and `benchmarks/results.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import checks, dns, edge, events, history, registry, replay, rpc, scale
from benchmarks._common import alternate
from benchmarks._report import chart, flatten_targets, table
from benchmarks._vhost import private_vhost

HERE = Path(__file__).resolve().parent
SECTIONS = ("events", "rpc", "registry", "replay", "history", "edge", "checks", "dns")


def pg_url() -> str | None:
    """PostgreSQL for the restore figure: `GOVBUS_BENCH_PG_URL`, else the local server (the
    benchmark creates a database of its own on it and drops it); empty skips PostgreSQL."""
    return (
        os.environ.get(
            "GOVBUS_BENCH_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
        )
        or None
    )


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run(
    url: str, *, quick: bool, only: set[str], log: Callable[[str], None]
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    rounds = 3 if quick else 5

    if "events" in only:
        # many short alternated trials: the broker's speed drifts with the machine's load, and
        # the median of many turns is fairer than a few long ones
        n = 3000 if quick else 8000
        ev_rounds = rounds if quick else 9
        log(f"events: {n:,} per trial, {ev_rounds} rounds, systems alternated")
        for runner in events.RUNNERS.values():  # warm-up: imports, first connections
            await runner(url, 500)
        trials = await alternate(
            "events",
            {s: functools.partial(r, url, n) for s, r in events.RUNNERS.items()},
            rounds=ev_rounds,
            log=log,
        )
        results["events"] = trials.medians()

    if "rpc" in only:
        seq, conc = (200, 1000) if quick else (2000, 10000)
        log(f"rpc: {seq:,} sequential and {conc:,} with 64 in flight per trial, {rounds} rounds")
        trials = await alternate(
            "rpc",
            {s: functools.partial(r, url, seq, conc) for s, r in rpc.RUNNERS.items()},
            rounds=rounds,
            log=log,
        )
        results["rpc"] = trials.medians()

    if "registry" in only:
        sizes = (10_000,) if quick else (10_000, 100_000)
        beats = 10_000 if quick else 50_000
        section: dict[str, Any] = {}
        for size in sizes:
            log(f"registry: {size:,} instances, {beats:,} heartbeats")
            figures = await registry.heartbeats_per_s(url, size, beats, log)
            figures["bytes_per_instance"] = registry.memory_per_instance(size)
            log(f"  registry {size:,}: {figures}")
            section[f"instances_{size}"] = figures
        section["heartbeats_per_s"] = min(v["heartbeats_per_s"] for v in section.values())
        if not quick:
            drain = section["broker_drain_per_s"] = await registry.broker_drain_per_s(url, beats)
            log(f"  registry: raw aio-pika drains a quorum queue at {drain:,.0f}/s")
        size, batches = (10_000, 50) if quick else (100_000, 300)
        log(f"registry: {batches * scale.BATCH:,} heartbeats in messages of {scale.BATCH:,}")
        section.update(await scale.batched_heartbeats_per_s(url, size, batches, log))
        if not quick:
            log("registry: 1,000,000 instances restored from SQLite and PostgreSQL")
            section["instances_1000000"] = await scale.million(1_000_000, pg_url(), log)
        results["registry"] = section

    if "replay" in only:
        n = 40_000 if quick else 200_000
        log(f"replay: a heartbeat-heavy log of {n:,} events")
        figures = await replay.run_replay(n)
        log(f"  replay: {figures}")
        results["replay"] = figures

    if "history" in only:
        n = 200_000 if quick else 1_000_000
        log(f"history: queries over a kept log of {n:,} events")
        figures = await history.run_history(n, log)
        log(f"  history: {figures}")
        results["history"] = figures

    if "edge" in only:
        per_load = "2 s" if quick else "8 s, 3 rounds"
        log(f"edge: wrk on GET /v1/services/<name> and its references ({per_load} a load)")
        figures = await edge.run_edge(url, quick=quick, log=log)
        log(f"  edge: {figures}")
        results["edge"] = figures

    if "checks" in only:
        offered, seconds = (3000, 5.0) if quick else (3000, 15.0)
        log(f"checks: {offered:,} HTTP checks a second offered to one checker, {seconds:g} s")
        results["checks"] = await checks.http_per_s(offered, seconds, log)

    if "dns" in only:
        seconds = 5.0 if quick else 15.0
        log(f"dns: web.service.consul ({dns.INSTANCES} instances) A and SRV, {seconds:g} s each")
        results["dns"] = await dns.run_dns(url, seconds, log)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the whole run in under two minutes")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument(
        "--url",
        default=os.environ.get("GOVBUS_URL", "amqp://guest:guest@127.0.0.1:5672/"),
        help="RabbitMQ (default: GOVBUS_URL or the local broker); a private vhost is used",
    )
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.json/png go")
    args = parser.parse_args(argv)
    if args.url.startswith("memory://"):
        parser.error("the benchmarks compare clients of RabbitMQ: --url must be amqp://")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    only = set(args.only or SECTIONS)
    began = time.perf_counter()
    with private_vhost(args.url) as url:
        results = asyncio.run(run(url, quick=args.quick, only=only, log=_log))
    results["targets"] = flatten_targets(results)
    results["meta"] = {
        "quick": args.quick,
        "seconds": round(time.perf_counter() - began, 1),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, args.out / "results.png")
    text = table(results)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps(results))
    else:
        print(text)
    # the table names each failed figure (ERROR lines); the exit status says there were some
    failed = any(isinstance(v, dict) and v.get("errors") for v in results.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
