"""Load from `wrk` (Debian's `/usr/bin/wrk`), not from a Python client, which caps what it can
measure: `await wrk(url, ...)` runs one load and returns its figures.

A small Lua script's `done()` prints wrk's own summary as JSON (requests, duration, latency
percentiles, every kind of error). Any error or non-2xx/3xx answer is a `LoadError`: a figure
made of refused requests would be a fake one.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile

__all__ = ["LoadError", "require_wrk", "wrk"]

_REPORT = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %.1f, "p99_us": %.1f, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class LoadError(RuntimeError):
    """The load generator failed, or some of its requests did."""


def require_wrk() -> str:
    """wrk's path; `LoadError` saying how to install it when it is missing."""
    found = shutil.which("wrk")
    if found is None:
        raise LoadError("wrk is not installed: `apt-get install wrk` (Debian) or see scripts/")
    return found


async def wrk(
    url: str,
    *,
    headers: dict[str, str] | None = None,
    threads: int = 2,
    connections: int = 16,
    seconds: int = 5,
) -> dict[str, float]:
    """`wrk -t threads -c connections -d seconds` against `url`: `per_s`, `p50_ms`, `p99_ms`,
    `requests`."""
    binary = require_wrk()
    with tempfile.NamedTemporaryFile("w", suffix=".lua", prefix="govbus-wrk-") as script:
        script.write(_REPORT)
        script.flush()
        args = [binary, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "-s", script.name]
        for name, value in (headers or {}).items():
            args += ["-H", f"{name}: {value}"]
        proc = await asyncio.create_subprocess_exec(
            *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(proc.communicate(), seconds + 60)
    text = out.decode(errors="replace")
    lines = [line for line in text.splitlines() if line.startswith("WRKJSON ")]
    if proc.returncode != 0 or not lines:
        raise LoadError(f"wrk failed ({proc.returncode}) on {url}: {err.decode()[-500:]}{text}")
    report = json.loads(lines[-1].removeprefix("WRKJSON "))
    errors = {k: report[k] for k in ("connect", "read", "write", "status", "timeout") if report[k]}
    if errors or not report["requests"]:
        sample = await _sample(url, headers or {}) if "status" in errors else ""
        raise LoadError(
            f"wrk on {url}: {report['requests']} requests, errors {errors or 'none answered'}"
            f" (status: answers >= 400){sample}"
        )
    return {
        "per_s": report["requests"] / (report["duration_us"] / 1e6),
        "p50_ms": report["p50_us"] / 1000,
        "p99_ms": report["p99_us"] / 1000,
        "requests": float(report["requests"]),
    }


async def _sample(url: str, headers: dict[str, str]) -> str:
    """One answer of `url`, to say what the failing answers were (wrk only counts them)."""
    import httpx

    try:
        async with httpx.AsyncClient(headers=headers, timeout=5) as client:
            r = await client.get(url)
    except httpx.HTTPError as exc:
        return f"; a request of its own failed: {exc!r}"
    return f"; one of them: {r.status_code} {r.text[:300]}"


def _self_check() -> None:  # pragma: no cover - `python -m benchmarks._wrk URL`
    import sys

    print(asyncio.run(wrk(sys.argv[1], seconds=2)))


if __name__ == "__main__":
    _self_check()
