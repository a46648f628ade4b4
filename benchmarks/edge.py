"""Edge: HTTP reads through `govbus edge` → `govbus discovery`, loaded by `wrk`.

`govbus discovery` and `govbus edge` run as their own processes on the run's vhost, as in a
deployment, with 20 instances of `web` registered. Beside them, two bare Quart apps serve the
edge's own answer for `web` with no bus behind them (`benchmarks._bare`): on uvicorn, exactly as
the edge is served (the ceiling, `baseline`), and on hypercorn, the edge's server before
(`hypercorn`, for the record). `wrk` loads each in turn (16 connections for requests per second,
one for the sequential latency); the targets' order rotates from round to round.

Then 2,000 blocking watchers (`benchmarks._watchers`, a process of their own) wait on
`GET /v1/services/web?index=N&wait=60s`; one instance registers; `watchers_notify_s` is the
time until the last of them has its answer. A watcher answered before the change did not
block: that is an error, not a figure.

Every failure (wrk errors, non-2xx answers, watchers that did not block) lands in `errors`,
named by its figure, and makes `python -m benchmarks` exit 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks._wrk import LoadError, require_wrk, wrk

CONCURRENCY = 16
INSTANCES = 20
WATCHERS = 2000
SECRET = "bench-secret-" + "b" * 32
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _govbus() -> str:
    return str(Path(sys.executable).with_name("govbus"))


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}


@contextlib.contextmanager
def _processes(commands: dict[str, list[str]], env: dict[str, str], logs: Path) -> Iterator[None]:
    procs = {}
    for name, args in commands.items():
        with (logs / f"{name}.log").open("wb") as err:
            procs[name] = subprocess.Popen(
                args, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT
            )
    try:
        yield
    except TimeoutError as exc:
        tails = {name: (logs / f"{name}.log").read_text(errors="replace")[-2000:] for name in procs}
        raise TimeoutError(f"{exc}: {tails}") from exc
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


async def _answering(url: str, headers: dict[str, str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=headers, timeout=5) as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} never answered")
            await asyncio.sleep(0.2)


def _instance(instance_id: str, port: int) -> dict[str, Any]:
    return {
        "service": "web",
        "instance_id": instance_id,
        "address": "10.0.0.1",
        "port": port,
        "tags": ["bench"],
        "ttl_s": 3600,
    }


async def _register(base: str, headers: dict[str, str], timeout: float = 90) -> bytes:
    """Register the instances once the discovery worker answers (it consumes its queue before
    it serves queries, so nothing registered is lost), wait until they are listed; the edge's
    answer for `web`."""
    await _answering(f"{base}/v1/services", headers, timeout)
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=headers, timeout=5) as client:
        for i in range(INSTANCES):
            body = _instance(f"web-{i}", 8000 + i)
            (await client.post(f"{base}/v1/instances", json=body)).raise_for_status()
        while True:
            r = await client.get(f"{base}/v1/services/web")
            if r.status_code == 200 and len(r.json()["instances"]) == INSTANCES:
                return r.content
            if time.monotonic() > deadline:
                raise TimeoutError(f"the instances were never all listed: {r.text[:300]}")
            await asyncio.sleep(0.2)


async def _watchers(base: str, headers: dict[str, str], token: str, quick: bool) -> float:
    """Seconds until `WATCHERS` blocking reads of `web` all hear one registration."""
    async with httpx.AsyncClient(headers=headers, timeout=5) as client:
        first = await client.get(f"{base}/v1/services/web")
        first.raise_for_status()
        index = first.headers.get("X-Govbus-Index")
        if index is None:
            raise LoadError("GET /v1/services/web carries no X-Govbus-Index")
        limit_s = 20.0 if quick else 60.0
        url = f"{base}/v1/services/web?index={index}&wait=60s"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks._watchers",
            url,
            token,
            str(WATCHERS),
            str(limit_s),
            cwd=ROOT,
            env={**_clean_env(), "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        try:
            ready = await asyncio.wait_for(proc.stdout.readline(), 60)
            if ready.strip() != b"ready":
                raise LoadError(f"the watchers never got their requests out: {ready!r}")
            await asyncio.sleep(1.0)  # let the edge read the last of them
            changed = time.time()
            body = _instance("web-watched", 9000)
            (await client.post(f"{base}/v1/instances", json=body)).raise_for_status()
            out = await asyncio.wait_for(proc.stdout.read(), limit_s + 60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    report = json.loads(out)
    answers = report["answers"]
    bad = [a for a in answers if a["status"] != 200]
    if bad:
        statuses = sorted({a["status"] for a in bad})
        raise LoadError(f"{len(bad)} of {WATCHERS} watchers failed (status {statuses}): {bad[0]}")
    early = sum(a["at"] < changed for a in answers)
    if early:
        raise LoadError(
            f"did not block: {early} of {WATCHERS} watchers (?index={index}&wait=60s) were "
            "answered before the change"
        )
    if report["unanswered"]:
        raise LoadError(f"{report['unanswered']} of {WATCHERS} never heard within {limit_s} s")
    stale = [a for a in answers if int(a["index"] or 0) <= int(index)]
    if stale:
        raise LoadError(f"{len(stale)} watchers were answered with index <= {index}")
    return float(max(a["at"] for a in answers) - changed)


async def run_edge(url: str, *, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    from http_edge import SCOPES, mint_token

    require_wrk()
    seconds, rounds = (2, 1) if quick else (8, 3)
    port, bare_port, hyper_port = _free_port(), _free_port(), _free_port()
    token = mint_token(list(SCOPES), secret=SECRET, ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    section: dict[str, Any] = {}
    errors: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        env = {**_clean_env(), "GOVBUS_URL": url, "GOVBUS_AUTH_SECRET": SECRET}
        govbus = {
            "discovery": [_govbus(), "discovery", "--db", f"sqlite+aiosqlite:///{tmp}/d.db"],
            "edge": [_govbus(), "edge", "--http", f"127.0.0.1:{port}"],
        }
        with _processes(govbus, env, Path(tmp)):
            body = await _register(base, headers)
            log(f"  edge: {INSTANCES} instances of 'web' listed ({len(body)} bytes)")
            (Path(tmp) / "body.json").write_bytes(body)
            bare = [sys.executable, "-m", "benchmarks._bare", f"{tmp}/body.json"]
            servers = {
                "bare-uvicorn": [*bare, str(bare_port), "uvicorn"],
                "bare-hypercorn": [*bare, str(hyper_port), "hypercorn"],
            }
            with _processes(servers, {**_clean_env(), "PYTHONPATH": str(ROOT)}, Path(tmp)):
                for p in (bare_port, hyper_port):
                    await _answering(f"http://127.0.0.1:{p}/v1/services/web", {})
                web = f"{base}/v1/services/web"
                loads: dict[str, tuple[str, int]] = {
                    "baseline": (f"http://127.0.0.1:{bare_port}/v1/services/web", CONCURRENCY),
                    "hypercorn": (f"http://127.0.0.1:{hyper_port}/v1/services/web", CONCURRENCY),
                    "hello": (f"{base}/hello", CONCURRENCY),
                    "govbus": (web, CONCURRENCY),
                    "govbus.sequential": (web, 1),
                    "consistent": (f"{web}?consistent=1", CONCURRENCY),
                    "consistent.sequential": (f"{web}?consistent=1", 1),
                }
                trials = await _rounds(loads, headers, seconds, rounds, errors, log)
            section = _figures(trials)
            log("  edge: 2,000 blocking watchers, then one change to 'web'")
            try:
                notify_s = await _watchers(base, headers, token, quick)
            except (LoadError, TimeoutError) as exc:
                errors["govbus.watchers_notify_s"] = str(exc)
                log(f"  edge: ERROR watchers: {exc}")
            else:
                section.setdefault("govbus", {})["watchers_notify_s"] = notify_s
                log(f"  edge: 2,000 watchers heard the change in {notify_s:.3f} s")
    if errors:
        section["errors"] = errors
    return section


async def _rounds(
    loads: dict[str, tuple[str, int]],
    headers: dict[str, str],
    seconds: int,
    rounds: int,
    errors: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, list[dict[str, float]]]:
    """Each load once a round (after a one-second warm-up), the order rotating; a load that
    fails is recorded in `errors` and not run again."""
    names = list(loads)
    trials: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for name in names:
        target, connections = loads[name]
        threads = min(2, connections)
        try:
            await wrk(target, headers=headers, threads=threads, connections=connections, seconds=1)
        except LoadError as exc:
            errors[name] = str(exc)
            log(f"  edge: ERROR {name}: {exc}")
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in errors:
                continue
            target, connections = loads[name]
            threads = min(2, connections)
            try:
                figures = await wrk(
                    target,
                    headers=headers,
                    threads=threads,
                    connections=connections,
                    seconds=seconds,
                )
            except LoadError as exc:
                errors[name] = str(exc)
                log(f"  edge: ERROR {name}: {exc}")
                continue
            trials[name].append(figures)
            log(
                f"  edge round {r + 1}: {name:<22} {figures['per_s']:>9,.0f}/s  "
                f"p50 {figures['p50_ms']:.3f} ms  p99 {figures['p99_ms']:.3f} ms"
            )
    return trials


def _figures(trials: dict[str, list[dict[str, float]]]) -> dict[str, Any]:
    """Medians of the trials: `per_s` from 16 connections, p50/p99 from the sequential run."""

    def median(name: str, metric: str) -> float | None:
        values = [t[metric] for t in trials.get(name, [])]
        return statistics.median(values) if values else None

    out: dict[str, Any] = {}
    for name in ("baseline", "hypercorn", "hello", "govbus", "consistent"):
        figures = {
            "per_s": median(name, "per_s"),
            "p50_ms": median(f"{name}.sequential", "p50_ms"),
            "p99_ms": median(f"{name}.sequential", "p99_ms"),
            "sequential_per_s": median(f"{name}.sequential", "per_s"),
        }
        kept = {k: v for k, v in figures.items() if v is not None}
        if kept:
            out[name] = kept
    return out
