"""Edge: HTTP `GET /v1/services/<name>` through the edge to the discovery worker and back.

`govbus discovery` and `govbus edge` run as their own processes on the run's vhost, as in a
deployment; the load comes from a third process (`benchmarks._httpload`, httpx): sequential
requests give p50 and p99, then 16 in flight give requests per second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

CONCURRENCY = 16
INSTANCES = 20
SECRET = "bench-secret-" + "b" * 32


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _govbus() -> str:
    return str(Path(sys.executable).with_name("govbus"))


@contextlib.contextmanager
def _processes(commands: dict[str, list[str]], env: dict[str, str], logs: Path) -> Iterator[None]:
    procs = {}
    for name, args in commands.items():
        with (logs / f"{name}.log").open("wb") as err:
            procs[name] = subprocess.Popen(
                [_govbus(), *args], env=env, stdout=subprocess.DEVNULL, stderr=err
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


async def _until_listed(base: str, headers: dict[str, str], timeout: float = 90) -> None:
    """Register the instances once the discovery worker answers (it consumes its queue before
    it serves queries, so nothing registered is lost), then wait until they are listed."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(headers=headers, timeout=5) as client:
        while True:
            try:
                if (await client.get(f"{base}/v1/services")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the edge and the discovery worker never answered")
            await asyncio.sleep(0.2)
        for i in range(INSTANCES):
            instance = {
                "service": "web",
                "instance_id": f"web-{i}",
                "address": "10.0.0.1",
                "port": 8000 + i,
                "tags": ["bench"],
                "ttl_s": 3600,
            }
            (await client.post(f"{base}/v1/instances", json=instance)).raise_for_status()
        while True:
            r = await client.get(f"{base}/v1/services/web")
            if r.status_code == 200 and len(r.json()["instances"]) == INSTANCES:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"the instances were never all listed: {r.text[:300]}")
            await asyncio.sleep(0.2)


async def run_edge(
    url: str, sequential: int, concurrent: int, log: Callable[[str], None]
) -> dict[str, float]:
    from http_edge import SCOPES, mint_token

    port = _free_port()
    token = mint_token(list(SCOPES), secret=SECRET, ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
        env = {**clean, "GOVBUS_URL": url, "GOVBUS_AUTH_SECRET": SECRET}
        commands = {
            "discovery": ["discovery", "--db", f"sqlite+aiosqlite:///{tmp}/discovery.db"],
            "edge": ["edge", "--http", f"127.0.0.1:{port}"],
        }
        with _processes(commands, env, Path(tmp)):
            await _until_listed(base, headers)
            log(f"  edge: {INSTANCES} instances of 'web' listed; load from a separate process")
            root = Path(__file__).resolve().parents[1]
            load = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks._httpload",
                f"{base}/v1/services/web",
                token,
                str(sequential),
                str(concurrent),
                str(CONCURRENCY),
                cwd=root,
                env={**clean, "PYTHONPATH": str(root)},
                stdout=subprocess.PIPE,
            )
            out, _ = await asyncio.wait_for(load.communicate(), 300)
            if load.returncode != 0:
                raise RuntimeError(f"the load generator failed ({load.returncode})")
    figures: dict[str, float] = json.loads(out)
    return figures
