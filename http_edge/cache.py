"""Registry answers the edge keeps, made fresh by the registry events it receives, and the
blocking reads (`?index=N&wait=30s`) built on them.

The discovery worker stays the source of truth: an answer here is one the worker gave (over
RPC), kept until something says it may be out of date:

- a registry event naming its service (or the instance it listed) arrives: the answer is
  dropped, and every blocking read on that service wakes;
- a protection event arrives (every answer shows the flag): everything is dropped;
- it is older than `max_age_s` (1 s): heartbeat times, load and notes change without an event;
- the connection to the broker drops or comes back: events may have been missed (a gap), so
  everything is dropped.

A read that began before an event arrived never keeps or returns an answer fetched before
it: every slot counts its invalidations, and an answer fetched under an older count is asked
again. Concurrent reads of one service share one RPC; 2,000 blocking reads on one service
cost one fetch per change, not one each.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import orjson

from bus.client import Bus
from bus.errors import NotFound
from bus.message import Delivery
from bus.tap import Tap
from schemas.rpc import ServiceRequest, ServicesRequest, ServicesView, ServiceView

log = logging.getLogger(__name__)

__all__ = ["MAX_WAIT_S", "RegistryCache", "index_of", "jittered"]

MAX_WAIT_S = 600.0
"""The longest a blocking read waits (Consul's limit too)."""

PATTERNS = ("registry.instance.#", "registry.protection.#")
_ALL = "*"  # the slot of `discovery.services` (the summary), dropped by any event
MAX_SLOTS = 10_000  # past this, idle slots are forgotten (reads of random names cost nothing)

Observe = Callable[[str, str, float], None]
"""`(method, outcome, seconds)` of each RPC the cache makes (the edge's metrics)."""

A = TypeVar("A", ServiceView, ServicesView)


def jittered(wait_s: float) -> float:
    """`wait_s` (at most `MAX_WAIT_S`) plus up to 1/16 more, as Consul does, so that many
    watchers started together do not all come back in the same instant."""
    wait_s = min(max(wait_s, 0.0), MAX_WAIT_S)
    return wait_s + random.uniform(0, wait_s / 16)


def index_of(exc: NotFound) -> int:
    """The index a `not_found` answer of `discovery.service` carries (0 if it has none)."""
    index = exc.details.get("index", 0)
    return index if isinstance(index, int) and index >= 0 else 0


def _retrieve(task: asyncio.Task[object]) -> None:
    # Every reader of a failed fetch may have gone (cancelled): its error is theirs, not a
    # "never retrieved" warning.
    if not task.cancelled():
        task.exception()


@dataclass(slots=True)
class _Slot:
    """One cached answer (or the `not_found` that stands for it) and who waits on it."""

    generation: int = 0
    answer: ServiceView | ServicesView | NotFound | None = None
    fetched_at: float = 0.0
    pending: asyncio.Task[ServiceView | ServicesView | NotFound] | None = None
    pending_generation: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    listed: frozenset[str] = frozenset()  # instance ids the answer lists
    waiting: int = 0  # blocking reads on it
    encoded: bytes | None = None  # the answer as JSON, once asked for

    def drop(self) -> None:
        self.generation += 1
        self.answer = self.encoded = None
        self.pending = None
        self.changed.set()
        self.changed = asyncio.Event()


class RegistryCache:
    """The edge's registry answers (`discovery.service`, `discovery.services`), kept fresh by
    registry events; see the module doc. `start()` taps the events, `close()` lets go."""

    def __init__(
        self,
        bus: Bus,
        *,
        max_age_s: float = 1.0,
        rpc_timeout_s: float = 5.0,
        observe: Observe | None = None,
    ) -> None:
        self.bus = bus
        self.max_age_s = max_age_s
        self.rpc_timeout_s = rpc_timeout_s
        self._observe = observe
        self._slots: dict[str, _Slot] = {}
        self._where: dict[str, str] = {}  # instance id -> the service whose answer lists it
        self._tap: Tap | None = None
        self._released = False
        self.fetches = 0
        """RPCs made to fill the cache (for metrics and tests)."""
        self.events = 0
        """Registry events received."""

    # -- life -------------------------------------------------------------------------------

    async def start(self) -> None:
        transport = self.bus.transport
        transport.on_disconnect(lambda _exc: self.clear())
        transport.on_reconnect(self.clear)
        self._tap = await self.bus.tap(
            PATTERNS, self._on_event, prefix="govbus.edge.cache", prefetch=1000
        )

    async def close(self) -> None:
        tap, self._tap = self._tap, None
        if tap is not None:
            await tap.close()
        self.clear()

    def encoded(self, answer: ServiceView) -> bytes:
        """`answer` (of `service`) as JSON: a cached answer is encoded once for all its reads."""
        slot = self._slots.get(answer.service)
        if slot is None or slot.answer is not answer:
            return answer.model_dump_json().encode()
        if slot.encoded is None:
            slot.encoded = answer.model_dump_json().encode()
        return slot.encoded

    @property
    def watchers(self) -> int:
        """Blocking reads waiting now."""
        return sum(slot.waiting for slot in self._slots.values())

    @property
    def live(self) -> bool:
        """Fed by events: only then may an answer be served from here."""
        return self._tap is not None and self._tap.ready

    def release(self) -> None:
        """Answer every blocking read now, as things stand, and block no more (shutdown)."""
        self._released = True
        for slot in self._slots.values():
            slot.changed.set()

    def clear(self) -> None:
        """Drop every answer and wake every blocking read (they ask the worker again)."""
        for slot in self._slots.values():
            slot.drop()
        self._where.clear()

    # -- events -----------------------------------------------------------------------------

    def _on_event(self, delivery: Delivery) -> None:
        self.events += 1
        if delivery.routing_key.startswith("registry.protection."):
            self.clear()
            return
        try:
            data = orjson.loads(delivery.message.body)
            inner = data.get("instance") if isinstance(data.get("instance"), dict) else data
            service, instance_id = inner.get("service"), inner.get("instance_id")
        except (orjson.JSONDecodeError, AttributeError):
            service = instance_id = None
        if not isinstance(service, str):
            self.clear()  # cannot tell what it changed: nothing cached may be trusted
            return
        self._drop(service)
        moved_from = self._where.get(instance_id) if isinstance(instance_id, str) else None
        if moved_from is not None and moved_from != service:
            self._drop(moved_from)  # a re-registration moved it: its old service changed too
        self._drop(_ALL)

    def _drop(self, key: str) -> None:
        slot = self._slots.get(key)
        if slot is not None:
            slot.drop()

    # -- reads ------------------------------------------------------------------------------

    async def service(
        self,
        name: str,
        *,
        index: int | None = None,
        wait_s: float = 300.0,
        consistent: bool = False,
        traceparent: str | None = None,
    ) -> ServiceView:
        """The worker's answer for one service (all its instances, unfiltered); with `index`,
        once the service's index passes it, or after `wait_s` (jittered) as it is then.

        Raises `NotFound` (with the service's `index` in its details) for an unknown service.
        `traceparent` goes with the RPC if this read makes one (a fill shared by several reads
        carries the first one's)."""
        answer = await self._answer(name, index, wait_s, consistent, traceparent)
        if isinstance(answer, NotFound):
            raise answer
        assert isinstance(answer, ServiceView)
        return answer

    async def services(
        self,
        *,
        index: int | None = None,
        wait_s: float = 300.0,
        consistent: bool = False,
        traceparent: str | None = None,
    ) -> ServicesView:
        """The summary of every service, as `service` (its index: the last change to any)."""
        answer = await self._answer(_ALL, index, wait_s, consistent, traceparent)
        assert isinstance(answer, ServicesView)
        return answer

    async def _answer(
        self,
        key: str,
        index: int | None,
        wait_s: float,
        consistent: bool,
        traceparent: str | None,
    ) -> ServiceView | ServicesView | NotFound:
        if index is None:
            return await self._read(key, consistent, traceparent)
        return await self._wait(key, index, wait_s, consistent, traceparent)

    async def _wait(
        self, key: str, index: int, wait_s: float, consistent: bool, traceparent: str | None
    ) -> ServiceView | ServicesView | NotFound:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + jittered(wait_s)
        while True:
            slot = self._slot(key)
            changed = slot.changed  # taken before the read: a change during it still wakes us
            answer = await self._read(key, consistent, traceparent)
            consistent = False  # the first answer came from the worker; later ones follow events
            seen = index_of(answer) if isinstance(answer, NotFound) else answer.index
            if seen > index or loop.time() >= deadline or self._released:
                return answer
            slot.waiting += 1
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                return await self._read(key, False, traceparent)
            finally:
                slot.waiting -= 1

    def _slot(self, key: str) -> _Slot:
        slot = self._slots.get(key)
        if slot is None:
            if len(self._slots) >= MAX_SLOTS:
                self._forget_idle()
            slot = self._slots[key] = _Slot()
        return slot

    def _forget_idle(self) -> None:
        for key in [k for k, s in self._slots.items() if not s.waiting and s.pending is None]:
            slot = self._slots.pop(key)
            for listed in slot.listed:
                if self._where.get(listed) == key:
                    del self._where[listed]

    async def _read(
        self, key: str, consistent: bool, traceparent: str | None
    ) -> ServiceView | ServicesView | NotFound:
        if consistent or not self.live:
            return await self._fetch(key, traceparent)
        slot = self._slot(key)
        while True:
            if slot.answer is not None and time.monotonic() - slot.fetched_at <= self.max_age_s:
                return slot.answer
            if slot.pending is None:
                slot.pending = asyncio.get_running_loop().create_task(
                    self._fill(slot, key, traceparent)
                )
                slot.pending.add_done_callback(_retrieve)
                slot.pending_generation = slot.generation
            generation, pending = slot.pending_generation, slot.pending
            answer = await asyncio.shield(pending)
            if generation == slot.generation:
                return answer
            # An event came while it was asked: that answer may be older than the event.

    async def _fill(
        self, slot: _Slot, key: str, traceparent: str | None
    ) -> ServiceView | ServicesView | NotFound:
        generation = slot.generation
        try:
            answer = await self._fetch(key, traceparent)
        finally:
            if slot.generation == generation:
                slot.pending = None
        if slot.generation == generation:
            slot.answer, slot.fetched_at, slot.encoded = answer, time.monotonic(), None
            if isinstance(answer, ServiceView):
                for listed in slot.listed:
                    if self._where.get(listed) == key:
                        del self._where[listed]
                slot.listed = frozenset(i.instance_id for i in answer.instances)
                for listed in slot.listed:
                    self._where[listed] = key
        return answer

    async def _fetch(
        self, key: str, traceparent: str | None
    ) -> ServiceView | ServicesView | NotFound:
        self.fetches += 1
        headers = {"traceparent": traceparent} if traceparent else None
        started = time.perf_counter()
        method = "discovery.services" if key == _ALL else "discovery.service"
        outcome = "ok"
        try:
            if key == _ALL:
                return await self.bus.rpc.call(
                    method,
                    ServicesRequest(),
                    reply=ServicesView,
                    timeout=self.rpc_timeout_s,
                    headers=headers,
                )
            return await self.bus.rpc.call(
                method,
                ServiceRequest(name=key),
                reply=ServiceView,
                timeout=self.rpc_timeout_s,
                headers=headers,
            )
        except NotFound as exc:
            outcome = exc.code
            return exc
        except Exception as exc:
            outcome = getattr(exc, "code", "bus_error")
            raise
        finally:
            if self._observe is not None:
                self._observe(method, outcome, time.perf_counter() - started)
