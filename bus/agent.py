"""`ServiceAgent`: keeps one service instance in the registry, from any asyncio program.

It registers, heartbeats every `interval_s` (a third of the TTL by default) with the health
its `check` reports, registers again when the discovery worker says it does not know the
instance (`registry.heartbeat.unknown`, e.g. after the instance expired), and on `stop()`
drains, waits `drain_grace_s`, then deregisters.

SIGTERM (what process managers, `docker stop` and Kubernetes send) stops it the same way, then
the program carries on as it would have: its own SIGTERM handler, else its Ctrl-C path
(`asyncio.run` cancels the main task). `stop_on_sigterm=False` leaves SIGTERM alone; so does an
agent started outside the main thread. Details in `bus._sigterm`.

>>> async with Bus(url, source="web") as bus:
...     registration = Register(service="web", instance_id="web-1", address="10.0.0.5", port=80)
...     async with ServiceAgent(bus, registration):
...         await serve_forever()

A broker or worker that is away does not stop it: publishes that fail are logged and tried
again on the next beat (registration first).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Self

from pydantic import ValidationError

from bus import _sigterm
from bus.client import Bus
from bus.clock import Clock
from bus.errors import BusError
from bus.message import Delivery
from bus.tap import Tap
from schemas import Deregister, Drain, Heartbeat, HeartbeatUnknown, Register, Status

__all__ = ["Check", "Health", "ServiceAgent"]

from bus.validation import describe_validation

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Health:
    """What a heartbeat reports."""

    status: Status = "passing"
    load: float | None = None
    note: str = ""


Check = Callable[[], Health | Awaitable[Health]]


class ServiceAgent:
    """Registers an instance, heartbeats for it, and takes it out cleanly on stop."""

    def __init__(
        self,
        bus: Bus,
        registration: Register,
        *,
        interval_s: float | None = None,
        check: Check | None = None,
        drain_grace_s: float = 0.0,
        clock: Clock | None = None,
        stop_on_sigterm: bool = True,
    ) -> None:
        self.bus = bus
        self.registration = registration
        self.interval_s = interval_s if interval_s is not None else registration.ttl_s / 3
        if self.interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.check = check
        self.drain_grace_s = drain_grace_s
        self.clock: Clock = clock or bus.clock
        self.registered = False
        self.registrations = 0
        self.heartbeats = 0
        self._tap: Tap | None = None
        self._reregistering: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._beat_lock = asyncio.Lock()
        self._stop_lock = asyncio.Lock()
        self.stop_on_sigterm = stop_on_sigterm
        self._unhook: _sigterm.Unhook | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen for `registry.heartbeat.unknown`, register, and start heartbeating."""
        self._tap = await self.bus.tap(
            [HeartbeatUnknown.TYPE],
            self._on_unknown,
            prefix=f"govbus.agent.{self.registration.instance_id}",
            prefetch=16,
        )
        await self._register()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"agent:{self.registration.instance_id}"
        )
        if self.stop_on_sigterm and self._unhook is None:
            self._unhook = _sigterm.on_sigterm_async(self.stop)

    async def drain(self) -> None:
        """Ask for no new work (the instance leaves picks but stays listed)."""
        r = self.registration
        await self.bus.publish(Drain(service=r.service, instance_id=r.instance_id))

    async def stop(self) -> None:
        """Stop heartbeating, drain, wait `drain_grace_s`, deregister, stop listening.

        Safe to call again, and concurrently (SIGTERM and the program's own shutdown).
        """
        async with self._stop_lock:
            await self._stop()

    async def _stop(self) -> None:
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        r = self.registration
        try:
            if self.registered:
                await self.drain()
                if self.drain_grace_s > 0:
                    await self.clock.sleep_until(
                        self.clock.now() + timedelta(seconds=self.drain_grace_s)
                    )
                await self.bus.publish(Deregister(service=r.service, instance_id=r.instance_id))
                self.registered = False
        except BusError as exc:
            log.warning("agent %s: could not deregister: %s", r.instance_id, exc)
        for task in list(self._reregistering):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tap is not None:
            await self._tap.close()
            self._tap = None

    async def beat(self) -> None:
        """One heartbeat now (or the registration, if it has not gone through yet)."""
        async with self._beat_lock:
            if not self.registered:
                await self._register()
                return
            health = await self._health()
            r = self.registration
            try:
                await self.bus.publish(
                    Heartbeat(
                        service=r.service,
                        instance_id=r.instance_id,
                        status=health.status,
                        load=health.load,
                        note=health.note,
                    )
                )
                self.heartbeats += 1
            except BusError as exc:
                log.warning("agent %s: heartbeat failed: %s", r.instance_id, exc)

    async def _health(self) -> Health:
        if self.check is None:
            return Health()
        try:
            result = self.check()
            return await result if inspect.isawaitable(result) else result
        except Exception as exc:
            log.warning("agent %s: health check failed: %s", self.registration.instance_id, exc)
            return Health(status="critical", note=f"check failed: {type(exc).__name__}"[:1024])

    async def _register(self) -> None:
        try:
            await self.bus.publish(self.registration)
        except BusError as exc:
            log.warning("agent %s: register failed: %s", self.registration.instance_id, exc)
            self.registered = False
            return
        self.registered = True
        self.registrations += 1

    def _on_unknown(self, delivery: Delivery) -> None:
        r = self.registration
        try:
            event = HeartbeatUnknown.model_validate_json(delivery.message.body)
        except ValidationError as exc:
            log.warning(
                "agent %s: ignored a bad %s: %s",
                r.instance_id,
                delivery.routing_key,
                describe_validation(exc),
            )
            return
        if (event.instance_id, event.service) == (r.instance_id, r.service):
            log.info(
                "agent %s: the registry forgot this instance; registering again", r.instance_id
            )
            task = asyncio.get_running_loop().create_task(self._register_again())
            self._reregistering.add(task)
            task.add_done_callback(self._reregistering.discard)

    async def _register_again(self) -> None:
        async with self._beat_lock:
            await self._register()

    async def _run(self) -> None:
        step = timedelta(seconds=self.interval_s)
        due = self.clock.now() + step
        while True:
            await self.clock.sleep_until(due)
            due += step
            await self.beat()
