"""DNS: `web.service.consul` (20 instances) asked of `govbus edge`'s DNS interface.

`govbus discovery` and `govbus edge` (with `GOVBUS_DNS`) run as their own processes on the
run's vhost, as in a deployment. The load comes from Debian's `dnsperf` (C, one thread, 100
queries in flight, UDP): A queries without EDNS (20 addresses fit in 512 bytes), then SRV
queries with EDNS (20 SRV records and their targets' addresses). Without `dnsperf` the load
comes from Python processes instead, which caps the figure: `load` says which ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

INSTANCES = 20
IN_FLIGHT = 100


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _processes(commands: dict[str, list[str]], env: dict[str, str], logs: Path) -> Iterator[None]:
    govbus = str(Path(sys.executable).with_name("govbus"))
    procs = []
    for name, args in commands.items():
        with (logs / f"{name}.log").open("wb") as err:
            procs.append(
                subprocess.Popen([govbus, *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
            )
    try:
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


async def _registered(base: str, timeout: float = 90) -> None:
    """20 instances of `web` (addresses of their own), once the workers answer; returns when
    they are all listed."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"{base}/v1/services")).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the edge and the discovery worker never answered ({base})")
            await asyncio.sleep(0.2)
        for i in range(INSTANCES):
            instance = {
                "service": "web",
                "instance_id": f"web-{i}",
                "address": f"10.0.0.{i + 1}",
                "port": 8000 + i,
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


def _dnsperf(dnsperf: str, port: int, query: str, seconds: float, tmp: Path) -> dict[str, float]:
    queries = tmp / "queries.txt"
    queries.write_text(query + "\n")
    args = [dnsperf, "-s", "127.0.0.1", "-p", str(port), "-d", str(queries)]
    args += ["-l", str(seconds), "-q", str(IN_FLIGHT), "-t", "2"]
    if query.endswith("SRV"):
        args.append("-e")  # EDNS: the whole SRV answer in one datagram
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60, check=True)
    text = out.stdout

    def figure(label: str) -> float:
        match = re.search(rf"{label}:\s+([0-9.]+)", text)
        if match is None:
            raise RuntimeError(f"dnsperf printed no {label!r}: {text[-800:]}")
        return float(match.group(1))

    lost = re.search(r"Queries lost:\s+\d+ \(([0-9.]+)%\)", text)
    noerror = re.search(r"NOERROR\s+\d+\s+\(([0-9.]+)%\)", text)
    return {
        "per_s": round(figure("Queries per second"), 1),
        "lost_pct": float(lost.group(1)) if lost else 0.0,
        "latency_ms": round(figure(r"Average Latency \(s\)") * 1000, 3),
        "noerror_pct": float(noerror.group(1)) if noerror else 0.0,
    }


def _ask_for(port: int, query: str, seconds: float, counts: multiprocessing.Queue[int]) -> None:
    """One load process (no dnsperf): queries one after another for `seconds`."""
    import dns.message
    import dns.query

    name, rdtype = query.split()
    done = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        dns.query.udp(dns.message.make_query(name, rdtype), "127.0.0.1", port=port, timeout=2)
        done += 1
    counts.put(done)


def _python_load(port: int, query: str, seconds: float, processes: int) -> dict[str, float]:
    counts: multiprocessing.Queue[int] = multiprocessing.Queue()
    procs = [
        multiprocessing.Process(target=_ask_for, args=(port, query, seconds, counts))
        for _ in range(processes)
    ]
    for proc in procs:
        proc.start()
    total = sum(counts.get(timeout=seconds + 60) for _ in procs)
    for proc in procs:
        proc.join()
    return {"per_s": round(total / seconds, 1)}


def _check_answer(port: int) -> None:
    import dns.message
    import dns.query

    answer = dns.query.udp(
        dns.message.make_query("web.service.consul", "A", use_edns=False), "127.0.0.1", port=port
    )
    count = sum(len(rrset) for rrset in answer.answer)
    if count != INSTANCES:
        raise RuntimeError(f"web.service.consul A answered {answer}")


async def run_dns(url: str, seconds: float, log: Callable[[str], None]) -> dict[str, object]:
    http, port = _free_port(), _free_port()
    dnsperf = shutil.which("dnsperf")
    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
        env = {**clean, "GOVBUS_URL": url, "GOVBUS_AUTH": "disabled"}
        env["GOVBUS_DNS"] = f"127.0.0.1:{port}"
        commands = {
            "discovery": ["discovery", "--db", f"sqlite+aiosqlite:///{tmp}/discovery.db"],
            "edge": ["edge", "--http", f"127.0.0.1:{http}"],
        }
        with _processes(commands, env, Path(tmp)):
            await _registered(f"http://127.0.0.1:{http}")
            await asyncio.to_thread(_check_answer, port)
            figures: dict[str, object] = {}
            for key, query in (("", "web.service.consul A"), ("srv_", "web.service.consul SRV")):
                if dnsperf:
                    got = await asyncio.to_thread(
                        _dnsperf, dnsperf, port, query, seconds, Path(tmp)
                    )
                else:
                    got = await asyncio.to_thread(_python_load, port, query, seconds, 4)
                log(f"  dns {query}: {got}")
                figures.update({f"{key}{name}": value for name, value in got.items()})
    figures["load"] = "dnsperf (Debian)" if dnsperf else "4 Python processes (dnspython)"
    figures["instances"] = INSTANCES
    return figures
