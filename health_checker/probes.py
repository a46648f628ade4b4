"""One run of one check: its verdict (Consul's) and a short output.

HTTP: 2xx passing, 429 warning, anything else critical; a timeout, a refused or reset
connection, an endless redirect chain or a bad TLS certificate is critical. TCP: a connect
that succeeds is passing. A run costs at most its `timeout_s` and a bounded read: only the
first `OUTPUT_LIMIT` bytes of a body are read (a 10 MB answer is not downloaded), and the
connection of an answer not read to its end is closed rather than reused.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

import aiohttp

from schemas import Check, Status
from schemas.checks import OUTPUT_LIMIT, tcp_target

__all__ = ["MAX_REDIRECTS", "Verdict", "probe", "verdict_of_status"]

MAX_REDIRECTS = 10
"""Redirects followed before a check is critical (as Go's HTTP client, which Consul uses)."""

Verdict = tuple[Status, str]


def verdict_of_status(code: int) -> Status:
    if 200 <= code < 300:
        return "passing"
    if code == 429:
        return "warning"
    return "critical"


def _cap(text: str) -> str:
    data = text.encode("utf-8", "replace")
    if len(data) <= OUTPUT_LIMIT:
        return text
    return data[: OUTPUT_LIMIT - 3].decode("utf-8", "ignore") + "..."


async def probe(check: Check, session: aiohttp.ClientSession, insecure: ssl.SSLContext) -> Verdict:
    """Run `check` once; never raises (every failure is a critical verdict)."""
    try:
        async with asyncio.timeout(check.timeout_s):
            if check.http is not None:
                return await _http(check, check.http, session, insecure)
            host, port = tcp_target(str(check.tcp))
            return await _tcp(host, port)
    except TimeoutError:
        reason = f"timed out after {check.timeout_s:g} s"
    except aiohttp.TooManyRedirects:
        reason = f"more than {MAX_REDIRECTS} redirects"
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
    return "critical", _cap(f"{_name(check)}: {reason}")


def _name(check: Check) -> str:
    return f"HTTP {check.method} {check.http}" if check.http else f"TCP connect {check.tcp}"


async def _http(
    check: Check, url: str, session: aiohttp.ClientSession, insecure: ssl.SSLContext
) -> Verdict:
    async with session.request(
        check.method,
        url,
        headers=check.headers,
        max_redirects=MAX_REDIRECTS,
        ssl=insecure if check.tls_skip_verify else True,
    ) as response:
        body = await response.content.read(OUTPUT_LIMIT)
        if not response.content.at_eof():
            response.close()  # the rest is never read: drop the connection, do not drain it
        status = verdict_of_status(response.status)
        head = f"HTTP {check.method} {url}: {response.status} {response.reason or ''}".rstrip()
        text = body.decode("utf-8", "replace")
        return status, _cap(f"{head}\n{text}" if text else head)


async def _tcp(host: str, port: int) -> Verdict:
    _, writer = await asyncio.open_connection(host, port)
    writer.close()
    with contextlib.suppress(OSError):  # a reset on close still means the connect succeeded
        await writer.wait_closed()
    return "passing", f"TCP connect {host}:{port}: success"
