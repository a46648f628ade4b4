"""`ProbeRunner`: the checks one checker owns, run on an event loop of its own.

The runner's loop lives in a thread of its own, so probing (thousands of connections a second,
slow or hanging targets) never runs on the loop of the bus or of a worker sharing the process
(`govbus up`), and a slow target never delays another check: each run is a task bounded by its
timeout, at most `concurrency` run at once, over at most `connections` pooled connections.
A check still running when it falls due again is not started twice. Verdicts go back to the
owner's loop through `on_verdict` (called there, never in the runner's thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import logging
import ssl
import threading
from collections.abc import Callable

import aiohttp

from bus.process import loop_factory
from schemas import Check

from .probes import Verdict, probe

__all__ = ["ProbeRunner"]

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""A check: (instance id, check id)."""

FIRST_RUN_SPREAD_S = 5.0
"""Checks newly assigned (at start, on a takeover) first run spread over at most this long
(by a hash of their key, so the same check lands at the same offset), not all at once."""


def _offset(key: Key, interval_s: float) -> float:
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest) / 2**64 * min(interval_s, FIRST_RUN_SPREAD_S)


class ProbeRunner:
    """Runs each assigned check every `interval_s` in a thread with its own event loop."""

    def __init__(
        self,
        on_verdict: Callable[[Key, Check, Verdict], None],
        *,
        concurrency: int = 512,
        connections: int = 256,
        name: str = "checker",
        user_agent: str = "govbus-checker",
    ) -> None:
        self.on_verdict = on_verdict
        self.concurrency = concurrency
        self.connections = connections
        self.runs = 0
        self.name = name
        self.user_agent = user_agent
        self._owner: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._checks: dict[Key, Check] = {}
        self._heap: list[tuple[float, int, Key]] = []
        self._seq = 0
        self._due: dict[Key, float] = {}
        self._batch: list[tuple[Key, Check, Verdict]] = []
        self._batch_lock = threading.Lock()
        self._running: set[Key] = set()
        self._wake: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._started.is_set()

    async def start(self) -> None:
        """Start the thread and its loop (returns once it runs)."""
        self._owner = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._main, name=f"{self.name}:probes", daemon=True)
        self._thread.start()
        await asyncio.to_thread(self._started.wait)

    async def stop(self) -> None:
        """Stop probing (runs in flight are cancelled) and end the thread."""
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            await asyncio.to_thread(self._thread.join)
        self._thread = None

    def assign(self, checks: dict[Key, Check]) -> None:
        """From now on run exactly these checks (a new or changed one soon, then each
        `interval_s`); callable from any thread."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._assign, dict(checks))

    # -- in the runner's thread ------------------------------------------------------------

    def _main(self) -> None:
        # uvloop where it is installed (a faster loop for many connections); asyncio's otherwise.
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake, self._stopping = asyncio.Event(), asyncio.Event()
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        connector = aiohttp.TCPConnector(limit=self.connections, ttl_dns_cache=60)
        # Each run has its own timeout (`probe`); the session's is only a backstop.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=None)
        limit = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(
            connector=connector,
            timeout=timeout,
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),  # no cookie carried from one run to the next
            headers={"User-Agent": self.user_agent},  # a check's own `headers` may override it
        ) as session:
            self._started.set()
            while not self._stopping.is_set():
                now = self._loop.time()
                while self._heap and self._heap[0][0] <= now:
                    due, _, key = heapq.heappop(self._heap)
                    check = self._checks.get(key)
                    if check is None or self._due.get(key) != due:
                        continue  # unassigned or rescheduled: a stale entry
                    self._push(key, due + check.interval_s)
                    if key in self._running:
                        continue  # still running from last time: never twice at once
                    self._running.add(key)
                    task = self._loop.create_task(self._run(key, check, session, insecure, limit))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                delay = self._heap[0][0] - self._loop.time() if self._heap else 3600.0
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(delay, 0.0)):
                        await self._either(self._wake, self._stopping)
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)

    @staticmethod
    async def _either(a: asyncio.Event, b: asyncio.Event) -> None:
        waits = [asyncio.ensure_future(a.wait()), asyncio.ensure_future(b.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    def _push(self, key: Key, due: float) -> None:
        self._seq += 1
        self._due[key] = due
        heapq.heappush(self._heap, (due, self._seq, key))

    def _assign(self, checks: dict[Key, Check]) -> None:
        assert self._loop is not None and self._wake is not None
        now = self._loop.time()
        for key in list(self._checks):
            if key not in checks:
                del self._checks[key]
                self._due.pop(key, None)
        for key, check in checks.items():
            if self._checks.get(key) != check:
                self._checks[key] = check
                self._push(key, now + _offset(key, check.interval_s))
        self._wake.set()

    def _deliver(self, item: tuple[Key, Check, Verdict]) -> None:
        # Verdicts cross to the owner's loop in batches: one wake-up of that loop (a write to
        # its self-pipe) per batch, not per check.
        with self._batch_lock:
            self._batch.append(item)
            first = len(self._batch) == 1
        if first and self._owner is not None and not self._owner.is_closed():
            self._owner.call_soon_threadsafe(self._hand_over)

    def _hand_over(self) -> None:
        with self._batch_lock:
            batch, self._batch = self._batch, []
        for key, check, verdict in batch:
            self.on_verdict(key, check, verdict)

    async def _run(
        self,
        key: Key,
        check: Check,
        session: aiohttp.ClientSession,
        insecure: ssl.SSLContext,
        limit: asyncio.Semaphore,
    ) -> None:
        try:
            async with limit:
                verdict = await probe(check, session, insecure)
            self.runs += 1
            self._deliver((key, check, verdict))
        except Exception as exc:  # a bug in one run must not end the others
            log.error("checker: a run of %s failed: %s", key, exc)
            log.debug("run", exc_info=exc)
        finally:
            self._running.discard(key)
