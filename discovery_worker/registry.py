"""The live service registry: instances, health transitions, expiry and its protection.

Pure logic, no I/O: every method takes the time it happens at (microseconds since the epoch,
from the causing event or the clock) and returns the events it derives, which it also queues
in `pending` for the journal to write and publish. Deriving the same inputs in the same order
gives the same state and the same events (ids included), which is what makes replay exact.

Health, for each instance:

- registered (or re-registered) -> `passing`, its heartbeat clock starts at the event's time;
- a heartbeat sets the status it reports (`reason="reported"`) or brings a missed instance
  back (`reason="recovered"`); a draining instance stays `draining`;
- no heartbeat for `ttl_s` -> `critical` (`reason="heartbeat_missed"`);
- missed for `deregister_after_s` more -> removed (`registry.instance.expired`), unless
  expiry protection is on.

Active checks: a `registry.check` sets one check's status; the instance's status is the
worst of its heartbeats' (missed, draining, reported) and its checks' (`Entry.health`), and a
change a check caused says so (`check_failed`, `check_warning`, `check_passed`).

Expiry protection: when at least `min_critical` instances, and more than `threshold` of all
instances, missed their heartbeats within one TTL window, expiry stops (they stay listed as
`critical`) until heartbeats resume and the missing share falls back under the rule. It ends
anyway after `max_protection_s`, or sooner on evidence: when, `evidence_ttls` TTLs after it
started (and every TTL after that), every instance still beating has beaten since it started,
the bus demonstrably works and the silence is the silent instances' own. Those still missing
then get one more TTL to come back before they are removed (`reason="protection_ended"` when
protection kept them past their own `deregister_after_s`).
"""

from __future__ import annotations

import heapq
import uuid
from collections import Counter
from dataclasses import dataclass

from bus.ids import derived_id
from schemas import (
    CheckResult,
    CheckState,
    Deregister,
    Drain,
    Event,
    Heartbeat,
    HeartbeatUnknown,
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatus,
    InstanceStatusChanged,
    ProtectionEntered,
    ProtectionExited,
    Register,
)

from ._entry import Entry, entry_from_register, instance_view
from ._time import NEVER, from_us, seconds_us, to_us
from .indexes import ServiceIndexes

_PROTECTION = ""
"""The timer heap's key for the protection timer (no instance id is empty)."""

_CHECK_REASONS = {"passing": "check_passed", "warning": "check_warning", "critical": "check_failed"}

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://govbus.dev/discovery")
"""The discovery worker's namespace of derived ids: `derived_id(NAMESPACE, cause, type, key)`
(`key` the instance id, or empty), and `(event_id, type)` for `registry.heartbeat.unknown`."""


@dataclass(frozen=True, slots=True)
class Derived:
    """An event the registry derived, with its deterministic id and its time."""

    event: Event
    event_id: str
    time_us: int


class Registry:
    """Every known instance, by id and by service, with the registry `index`."""

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        min_critical: int = 3,
        max_protection_s: float = 900.0,
        evidence_ttls: int = 5,
    ) -> None:
        self.threshold = threshold
        self.min_critical = min_critical
        self.max_protection_us = seconds_us(max_protection_s)
        self.evidence_ttls = evidence_ttls
        self.instances: dict[str, Entry] = {}
        self.by_service: dict[str, dict[str, Entry]] = {}
        self.index = 0
        self.indexes = ServiceIndexes()
        self.protection = False
        self.protection_exited_us = 0
        self.protection_since_us = 0
        self.protection_ttl_us = 0  # the TTL of the miss that started it: the evidence pace
        self._protection_due = NEVER
        self.missed: set[str] = set()
        self.pending: list[Derived] = []
        # What the journal has yet to write.
        self.dirty: set[str] = set()
        self.removed: set[str] = set()
        self.dirty_checks: set[str] = set()  # instances whose checks changed (own table)
        # Resources placed on instances (learnt from `resource.*`): id -> (host, version).
        self.placements: dict[str, tuple[str | None, int]] = {}
        self.placed: Counter[str] = Counter()
        self.dirty_placements: set[str] = set()
        self._heap: list[tuple[int, str]] = []

    # -- inputs ----------------------------------------------------------------------------

    def register(self, event: Register, event_id: str, at: int) -> list[Derived]:
        """Add an instance, or update it (moving it if it names another service)."""
        mark = len(self.pending)
        old = self.instances.get(event.instance_id)
        new = entry_from_register(event, at)
        if new.checks or (old is not None and old.checks):
            self.dirty_checks.add(event.instance_id)
        if old is None:
            self._add(new)
            self._emit(InstanceRegistered(instance=instance_view(new)), at, event_id, new)
            self._status(new, None, "registered", at, event_id)
        else:
            changed = not old.same_registration(new)
            previous = old.status
            if old.service != new.service:
                self._remove(old)
                new.registered_at = old.registered_at
                self._add(new)
                entry = new
            else:
                entry = old
                entry.update_from(new)
            entry.last_heartbeat = max(entry.last_heartbeat, at)
            entry.reported, entry.draining, entry.load, entry.note = event.status, False, None, ""
            self._unmiss(entry)
            entry.status = entry.health()
            self._touch(entry, listed=changed or previous != entry.status)
            if changed:
                self._emit(InstanceRegistered(instance=instance_view(entry)), at, event_id, entry)
            if previous != entry.status:
                self._status(entry, previous, "reregistered", at, event_id)
            self._check_exit(at, event_id)
        self._schedule(self.instances[event.instance_id])
        return self.pending[mark:]

    def heartbeat(self, event: Heartbeat, event_id: str, at: int) -> list[Derived]:
        """Touch an instance; a heartbeat older than the last one seen has no effect."""
        entry = self.instances.get(event.instance_id)
        if entry is None or entry.service != event.service:
            derived = Derived(
                HeartbeatUnknown(service=event.service, instance_id=event.instance_id),
                derived_id(NAMESPACE, event_id, HeartbeatUnknown.TYPE),
                at,
            )
            self.pending.append(derived)
            return [derived]
        if at < entry.last_heartbeat or (
            at == entry.last_heartbeat
            and (event.status, event.load, event.note) == (entry.reported, entry.load, entry.note)
        ):
            return []  # stale, or the same heartbeat again
        mark = len(self.pending)
        previous = entry.status
        was_missed = entry.missed
        entry.last_heartbeat = at
        entry.reported, entry.load, entry.note = event.status, event.load, event.note
        self._unmiss(entry)
        entry.status = entry.health()
        self._touch(entry, listed=entry.status != previous)
        if entry.status != previous:
            self._status(entry, previous, "recovered" if was_missed else "reported", at, event_id)
        if was_missed:
            self._check_exit(at, event_id)
            self._schedule(entry)
        return self.pending[mark:]

    def deregister(self, event: Deregister, event_id: str, at: int) -> list[Derived]:
        entry = self.instances.get(event.instance_id)
        if entry is None or entry.service != event.service:
            return []
        mark = len(self.pending)
        self._remove(entry)
        self._emit(
            InstanceDeregistered(service=entry.service, instance_id=entry.instance_id),
            at,
            event_id,
            entry,
        )
        self._check_exit(at, event_id)
        return self.pending[mark:]

    def drain(self, event: Drain, event_id: str, at: int) -> list[Derived]:
        entry = self.instances.get(event.instance_id)
        if entry is None or entry.service != event.service or entry.draining:
            return []
        mark = len(self.pending)
        entry.draining = True
        previous = entry.status
        entry.status = entry.health()
        self._touch(entry, listed=entry.status != previous)
        if previous != entry.status:
            self._status(entry, previous, "drain_requested", at, event_id)
        return self.pending[mark:]

    def check(self, event: CheckResult, event_id: str, at: int) -> list[Derived]:
        """A checker's verdict on one check; the status becomes the worst of TTL and checks.

        A result for an unknown instance or check, an older one than the last applied, or one
        that says nothing new, has no effect.
        """
        entry = self.instances.get(event.instance_id)
        if entry is None or entry.service != event.service or entry.checks is None:
            return []
        state = entry.checks.get(event.check_id)
        if state is None or (state.since is not None and at < to_us(state.since)):
            return []
        if (state.status, state.output) == (event.status, event.output):
            return []
        mark = len(self.pending)
        entry.checks[event.check_id] = CheckState.model_construct(
            check=state.check, status=event.status, output=event.output, since=from_us(at)
        )
        self.dirty_checks.add(entry.instance_id)
        previous = entry.status
        entry.status = entry.health()
        self._touch(entry, listed=entry.status != previous)
        if entry.status != previous:
            reason = _CHECK_REASONS[event.status]
            self._status(
                entry, previous, reason, at, event_id, check=(event.check_id, event.output)
            )
        return self.pending[mark:]

    def place(self, resource_id: str, host: str | None, version: int, *, deleted: bool) -> bool:
        """Learn where a resource lives; an event older than the version known is ignored."""
        known = self.placements.get(resource_id)
        if known is not None and version <= known[1]:
            return False
        if known is not None and known[0] is not None:
            self.placed[known[0]] -= 1
            if self.placed[known[0]] <= 0:
                del self.placed[known[0]]
        if deleted:
            # Keep the version (host None) so a late duplicate cannot bring it back.
            self.placements[resource_id] = (None, version)
        else:
            self.placements[resource_id] = (host, version)
            if host is not None:
                self.placed[host] += 1
        self.dirty_placements.add(resource_id)
        return True

    # -- time ------------------------------------------------------------------------------

    def next_due(self) -> int | None:
        """When the next timer may fire (possibly early: `advance` re-checks)."""
        return self._heap[0][0] if self._heap else None

    def advance(self, now: int, limit: int | None = None) -> list[Derived]:
        """Apply every expiry transition due by `now`, each at its own due time; with `limit`,
        at most that many (`due_by(now)` says whether more are left)."""
        mark = len(self.pending)
        heap = self._heap
        budget = -1 if limit is None else limit
        while heap and heap[0][0] <= now and budget != 0:
            budget -= 1
            due, instance_id = heapq.heappop(heap)
            if instance_id == _PROTECTION:
                if due == self._protection_due:
                    self._protection_timer(due)
                continue
            entry = self.instances.get(instance_id)
            if entry is None or entry.scheduled != due:
                continue  # removed, or rescheduled earlier: a stale heap entry
            entry.scheduled = NEVER  # its heap entry is gone
            if entry.due(self.protection, self.protection_exited_us) > due:
                self._schedule(entry)  # a heartbeat moved it on (or protection parks it)
                continue
            if not entry.missed:
                self._miss(entry, due)
                self._schedule(entry)
            else:
                self._expire(entry, due)
        return self.pending[mark:]

    def due_by(self, now: int) -> bool:
        """Whether something is due by `now` (a sliced `advance` has more to do)."""
        return bool(self._heap) and self._heap[0][0] <= now

    # -- persistence -----------------------------------------------------------------------

    def load(
        self,
        entries: list[Entry],
        *,
        index: int,
        protection: bool,
        protection_exited_us: int,
        placements: dict[str, tuple[str | None, int]],
        protection_since_us: int = 0,
        protection_ttl_us: int = 0,
    ) -> None:
        """Restore what the journal saved; every instance is judged by its last heartbeat."""
        for entry in entries:
            entry.scheduled = NEVER
            self._add(entry)
            if entry.missed:
                self.missed.add(entry.instance_id)
            self._schedule(entry)
        self.index = index
        self.indexes.restored(index)
        self.protection = protection
        self.protection_exited_us = protection_exited_us
        self.protection_since_us = protection_since_us
        self.protection_ttl_us = protection_ttl_us
        if protection and not protection_ttl_us:
            # Saved before protection had a start: it began at the latest miss, at the latest.
            missed = [self.instances[i] for i in self.missed]
            self.protection_since_us = max((e.missed_at for e in missed), default=0)
            self.protection_ttl_us = max((e.ttl_us for e in missed), default=seconds_us(30))
        if protection:
            start = self.protection_since_us
            self._arm_protection(start + self.evidence_ttls * self.protection_ttl_us)
        for resource_id, (host, version) in placements.items():
            self.placements[resource_id] = (host, version)
            if host is not None:
                self.placed[host] += 1
        self.dirty.clear()

    # -- internals -------------------------------------------------------------------------

    def _add(self, entry: Entry) -> None:
        self.instances[entry.instance_id] = entry
        self.by_service.setdefault(entry.service, {})[entry.instance_id] = entry
        self.removed.discard(entry.instance_id)
        self._touch(entry)

    def _remove(self, entry: Entry) -> None:
        del self.instances[entry.instance_id]
        group = self.by_service[entry.service]
        del group[entry.instance_id]
        if not group:
            del self.by_service[entry.service]
        self.missed.discard(entry.instance_id)
        self.dirty.discard(entry.instance_id)
        self.removed.add(entry.instance_id)
        if entry.checks:
            self.dirty_checks.add(entry.instance_id)
        entry.scheduled = NEVER
        self.index += 1
        self.indexes.changed(entry.service, self.index)

    def _touch(self, entry: Entry, *, listed: bool = True) -> None:
        self.index += 1
        self.dirty.add(entry.instance_id)
        if listed:  # not for heartbeat times alone (see `indexes`)
            self.indexes.changed(entry.service, self.index)

    def _schedule(self, entry: Entry) -> None:
        due = entry.due(self.protection, self.protection_exited_us)
        if due < entry.scheduled:
            entry.scheduled = due
            heapq.heappush(self._heap, (due, entry.instance_id))

    def _emit(self, event: Event, at: int, cause: object, entry: Entry | None = None) -> None:
        key = entry.instance_id if entry is not None else ""
        self.pending.append(Derived(event, derived_id(NAMESPACE, cause, event.TYPE, key), at))

    def _status(
        self,
        entry: Entry,
        previous: InstanceStatus | None,
        reason: str,
        at: int,
        cause: object,
        *,
        check: tuple[str, str] | None = None,
    ) -> None:
        event = InstanceStatusChanged(
            service=entry.service,
            instance_id=entry.instance_id,
            previous=previous,
            status=entry.status,
            reason=reason,
            check_id=check[0] if check else None,
            output=check[1] if check else "",
        )
        entry.reason = reason
        self._emit(event, at, cause, entry)

    def _unmiss(self, entry: Entry) -> None:
        entry.missed = False
        self.missed.discard(entry.instance_id)

    def _miss(self, entry: Entry, due: int) -> None:
        previous = entry.status
        entry.missed = True
        entry.missed_at = due
        entry.status = entry.health()
        self.missed.add(entry.instance_id)
        self._touch(entry, listed=entry.status != previous)
        cause = f"missed:{entry.instance_id}:{due}"
        if previous != "critical":
            self._status(entry, previous, "heartbeat_missed", due, cause)
        if not self.protection and self._too_many(len(self.missed)):
            # Only misses within one TTL window count: a slow trickle of deaths is real.
            window_start = due - entry.ttl_us
            recent = sum(1 for i in self.missed if self.instances[i].missed_at >= window_start)
            if self._too_many(recent):
                self.protection = True
                self.protection_since_us = due
                self.protection_ttl_us = entry.ttl_us
                self.index += 1
                self.indexes.protection_changed(self.index)
                self._emit(self._protection_event(ProtectionEntered), due, cause)
                self._arm_protection(due + self.evidence_ttls * entry.ttl_us)

    def _expire(self, entry: Entry, at: int) -> None:
        self._remove(entry)
        # Kept past its own deregister_after_s by protection: say so.
        held = self.protection_exited_us > entry.missed_at + seconds_us(entry.deregister_after_s)
        self._emit(
            InstanceExpired(
                service=entry.service,
                instance_id=entry.instance_id,
                last_heartbeat=from_us(entry.last_heartbeat),
                reason="protection_ended" if held else "heartbeat_missed",
            ),
            at,
            f"expired:{entry.instance_id}:{at}",
            entry,
        )
        self._check_exit(at, f"expired:{entry.instance_id}:{at}")

    def _check_exit(self, at: int, cause: object) -> None:
        if not self.protection:
            return
        if self._too_many(len(self.missed)):
            return
        self._exit(at, cause, "heartbeats_resumed")

    def _exit(self, at: int, cause: object, reason: str) -> None:
        self.protection = False
        self.protection_exited_us = at
        self._protection_due = NEVER
        self.index += 1
        self.indexes.protection_changed(self.index)
        event = ProtectionExited(
            critical=len(self.missed),
            total=len(self.instances),
            threshold=self.threshold,
            reason=reason,
        )
        self._emit(event, at, cause)
        for instance_id in sorted(self.missed):  # parked expiries are due again
            self._schedule(self.instances[instance_id])

    def _arm_protection(self, due: int) -> None:
        due = min(due, self.protection_since_us + self.max_protection_us)
        self._protection_due = due
        heapq.heappush(self._heap, (due, _PROTECTION))

    def _protection_timer(self, due: int) -> None:
        """Protection must end: at `max_protection_s`, or sooner on evidence (see module doc)."""
        self._protection_due = NEVER
        if not self.protection:
            return
        cause = f"protection:{self.protection_since_us}:{due}"
        if due >= self.protection_since_us + self.max_protection_us:
            self._exit(due, cause, "time_limit")
        elif self._others_beating():
            self._exit(due, cause, "others_beating")
        else:
            self._arm_protection(due + max(self.protection_ttl_us, seconds_us(1)))

    def _others_beating(self) -> bool:
        """Every instance not missing has beaten since protection started (and there is one)."""
        since = self.protection_since_us
        live = [e for e in self.instances.values() if not e.missed and e.ttl_s > 0]
        return bool(live) and all(e.last_heartbeat >= since for e in live)

    def _too_many(self, critical: int) -> bool:
        return critical >= self.min_critical and critical > self.threshold * len(self.instances)

    def _protection_event(
        self, model: type[ProtectionEntered] | type[ProtectionExited]
    ) -> ProtectionEntered | ProtectionExited:
        return model(critical=len(self.missed), total=len(self.instances), threshold=self.threshold)
