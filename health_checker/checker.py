"""`Checker`: learns the registry's checks, runs its share of them, publishes what changed.

- **What to check**: every instance's `checks`, from `discovery.state` at start (and every
  `state_every_s`), kept fresh by the registry's events (`registry.instance.registered`,
  `.deregistered`, `.expired`) on a tap.
- **Who checks it**: the live checkers are the passing (or warning) instances of service
  `govbus-checker`, which each checker registers as and heartbeats for (`bus.agent`); each
  check is run by one of them, chosen by rendezvous hashing (`ring.owner`). Members come from
  the same events (`status_changed`: a checker killed with SIGKILL turns critical one TTL after
  its last heartbeat) and from `discovery.service` every `members_every_s`.
- **Thresholds apply here**, in the checker that runs the check: it counts consecutive
  failures and passes and publishes `registry.check` only when the status it concludes
  changes (and once when it takes a check over), so the registry (and a replay) applies each
  event as it is, with no counter of its own to restore.
- **Running** is the `ProbeRunner`'s, on its own loop in its own thread; verdicts come back
  here, on the bus's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from bus.agent import ServiceAgent
from bus.client import Bus
from bus.errors import BusError
from bus.message import Delivery
from bus.tap import Tap
from schemas import (
    Check,
    CheckResult,
    Instance,
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatusChanged,
    Register,
    Status,
)

from .config import CheckerConfig
from .probes import Verdict
from .ring import owner
from .runner import Key, ProbeRunner

__all__ = ["Checker"]

log = logging.getLogger(__name__)

_LIVE = frozenset({"passing", "warning"})


@dataclass(slots=True)
class Tracked:
    """A check of the registry, with what this checker concluded of it."""

    service: str
    check: Check
    status: Status  # as the registry has it (or as this checker last published it)
    fails: int = 0
    passes: int = 0
    announce: bool = True  # publish the next verdict even if unchanged (a takeover)


class Checker:
    """One checker process's worth of checks (`start()`, `stop()`, `ready`)."""

    def __init__(self, *, bus: Bus, config: CheckerConfig) -> None:
        self.bus = bus
        self.config = config
        self.id = config.instance_id
        self.tracked: dict[Key, Tracked] = {}
        self.members: set[str] = {self.id}
        self.owned: set[Key] = set()
        self.by_instance: dict[str, set[Key]] = {}
        self._ring: list[str] = [self.id]
        self.published = 0
        self.runner = ProbeRunner(
            self._on_verdict,
            concurrency=config.concurrency,
            connections=config.connections,
            name=self.id,
            user_agent=f"govbus-checker ({self.id})",
        )
        registration = Register(
            service=config.service,
            instance_id=self.id,
            address=config.address,
            port=config.port,
            ttl_s=config.ttl_s,
            deregister_after_s=max(30.0, 5 * config.ttl_s),
        )
        self.agent = ServiceAgent(bus, registration, stop_on_sigterm=False)
        self._tap: Tap | None = None
        self._outbox: asyncio.Queue[CheckResult] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._loaded = False  # the registry's checks read once (discovery may start later)

    @property
    def ready(self) -> bool:
        return self._started and self.runner.ready and self._tap is not None and self._tap.ready

    async def start(self) -> None:
        if not self.bus.transport.is_connected:
            await self.bus.start()
        self._tap = await self.bus.tap(
            ["registry.instance.*"], self._on_event, prefix="govbus.checker", prefetch=256
        )
        await self.runner.start()
        await self.agent.start()
        await self._load_state()
        await self._load_members()
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._publish_loop(), name=f"{self.id}:publish"),
            loop.create_task(self._every(self.config.members_every_s, self._load_members)),
            loop.create_task(self._every(self.config.state_every_s, self._load_state)),
        ]
        self._started = True
        log.info("checker %s: %d check(s) known", self.id, len(self.tracked))

    async def stop(self) -> None:
        """Stop checking, leave the ring (deregister: the others take over at once)."""
        self._started = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.runner.stop()
        await self.agent.stop()
        if self._tap is not None:
            await self._tap.close()
            self._tap = None

    # -- learning --------------------------------------------------------------------------

    def learn(self, instance: Instance) -> set[Key]:
        """Take an instance's checks as the registry has them (replacing what was known);
        returns the keys added, changed or removed."""
        iid = instance.instance_id
        had = self.by_instance.pop(iid, set())
        now: set[Key] = set()
        touched: set[Key] = set()
        for state in instance.checks:
            key = (iid, str(state.check.id))
            now.add(key)
            known = self.tracked.get(key)
            if known is None or known.check != state.check:
                self.tracked[key] = Tracked(instance.service, state.check, state.status)
                touched.add(key)
            else:
                known.service = instance.service
        for key in had - now:
            del self.tracked[key]
            touched.add(key)
        if now:
            self.by_instance[iid] = now
        return touched

    def forget(self, instance_id: str) -> set[Key]:
        gone = self.by_instance.pop(instance_id, set())
        for key in gone:
            del self.tracked[key]
        return gone

    def _member(self, instance_id: str, live: bool) -> bool:
        """Record whether a checker is live; returns whether the members changed."""
        if instance_id == self.id:
            return False  # itself, always
        before = len(self.members)
        if live:
            self.members.add(instance_id)
        else:
            self.members.discard(instance_id)
        return len(self.members) != before

    async def _load_state(self) -> None:
        try:
            state = await self.bus.call(f"{self.config.discovery}.state", {}, timeout=30)
        except BusError as exc:
            log.warning("checker %s: cannot read the registry yet: %s", self.id, exc)
            return
        present = set()
        for raw in state["instances"]:
            instance = Instance.model_validate(raw)
            present.add(instance.instance_id)
            self.learn(instance)
            if instance.service == self.config.service:
                self._member(instance.instance_id, instance.status in _LIVE)
        for instance_id in set(self.by_instance) - present:
            self.forget(instance_id)
        self._loaded = True
        self.rebalance()

    async def _load_members(self) -> None:
        if not self._loaded:
            await self._load_state()  # the discovery worker was not there at start
        params = {"name": self.config.service}
        try:
            view = await self.bus.call(f"{self.config.discovery}.service", params, timeout=10)
        except BusError as exc:
            log.debug("checker %s: members unknown for now: %s", self.id, exc)
            return
        live = {i["instance_id"] for i in view["instances"] if i["status"] in _LIVE}
        self.members = live | {self.id}
        self.rebalance()

    def _on_event(self, delivery: Delivery) -> None:
        kind = delivery.routing_key
        body = delivery.message.body
        ours = self.config.service
        try:
            if kind == InstanceRegistered.TYPE:
                instance = InstanceRegistered.model_validate_json(body).instance
                touched = self.learn(instance)
                joined = instance.service == ours and self._member(
                    instance.instance_id, instance.status in _LIVE
                )
            elif kind in (InstanceDeregistered.TYPE, InstanceExpired.TYPE):
                gone = InstanceDeregistered.model_validate_json(body)
                touched = self.forget(gone.instance_id)
                joined = gone.service == ours and self._member(gone.instance_id, False)
            elif kind == InstanceStatusChanged.TYPE:
                changed = InstanceStatusChanged.model_validate_json(body)
                if changed.service != ours:
                    return
                touched, joined = set(), self._member(changed.instance_id, changed.status in _LIVE)
            else:
                return
        except ValidationError as exc:
            log.warning("checker %s: ignored a bad %s: %s", self.id, kind, exc)
            return
        if joined:
            self.rebalance()  # the members changed: every check may move
        elif touched:
            self.place(touched)

    # -- sharing ---------------------------------------------------------------------------

    def rebalance(self) -> None:
        """Hand the runner the checks this checker owns among the live members now."""
        self._ring = sorted(self.members)
        owned = {k for k in self.tracked if self._mine(k)}
        for key in owned - self.owned:
            self._take(key)
        self.owned = owned
        self._assign()

    def place(self, keys: set[Key]) -> None:
        """Decide only `keys` (added, changed or removed checks; members unchanged)."""
        for key in keys:
            if key in self.tracked and self._mine(key):
                if key not in self.owned:
                    self._take(key)
                    self.owned.add(key)
            else:
                self.owned.discard(key)
        self._assign()

    def _mine(self, key: Key) -> bool:
        return owner(f"{key[0]}/{key[1]}", self._ring) == self.id

    def _take(self, key: Key) -> None:
        tracked = self.tracked[key]
        tracked.fails = tracked.passes = 0
        tracked.announce = True  # a new owner says what it finds once, changed or not

    def _assign(self) -> None:
        self.runner.assign({k: self.tracked[k].check for k in self.owned})

    # -- verdicts --------------------------------------------------------------------------

    def _on_verdict(self, key: Key, check: Check, verdict: Verdict) -> None:
        tracked = self.tracked.get(key)
        if tracked is None or tracked.check != check or key not in self.owned:
            return  # changed, removed or handed over meanwhile
        status, output = verdict
        if status == "passing":
            tracked.passes, tracked.fails = tracked.passes + 1, 0
            done = tracked.passes >= check.successes_before_passing
        else:
            tracked.fails, tracked.passes = tracked.fails + 1, 0
            done = tracked.fails >= check.failures_before_critical
        concluded = status if done else tracked.status
        if concluded == tracked.status and not tracked.announce:
            return
        tracked.status, tracked.announce = concluded, False
        self._outbox.put_nowait(
            CheckResult(
                service=tracked.service,
                instance_id=key[0],
                check_id=key[1],
                status=concluded,
                output=output,
            )
        )

    async def _publish_loop(self) -> None:
        while True:
            result = await self._outbox.get()
            try:
                await self.bus.publish(result)
                self.published += 1
            except BusError as exc:
                log.warning("checker %s: publishing a result failed: %s", self.id, exc)
                tracked = self.tracked.get((result.instance_id, result.check_id))
                if tracked is not None:
                    tracked.announce = True  # the next run says it again

    @staticmethod
    async def _every(seconds: float, action: Any) -> None:
        while True:
            await asyncio.sleep(seconds)
            await action()
