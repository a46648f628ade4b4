"""One registered instance in memory: a slotted record of plain values (well under 1 KB)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from schemas import CheckState, Instance, InstanceStatus, Register, Status

from ._time import NEVER, from_us, seconds_us

_NO_TAGS: tuple[str, ...] = ()
_RANK = {"passing": 0, "warning": 1, "draining": 2, "critical": 3}
"""Worst wins when an instance's TTL and its checks disagree (a critical check beats draining)."""


@dataclass(slots=True, eq=False)
class Entry:
    """An instance as the registry keeps it; times are microseconds since the epoch."""

    service: str
    instance_id: str
    address: str
    port: int
    tags: tuple[str, ...]
    meta: dict[str, str] | None
    weight: int
    ttl_s: float
    deregister_after_s: float
    registered_at: int
    last_heartbeat: int
    status: InstanceStatus = "passing"
    reported: Status = "passing"  # what the last heartbeat said
    draining: bool = False
    missed: bool = False  # critical because heartbeats stopped
    missed_at: int = 0
    load: float | None = None
    note: str = ""
    reason: str | None = None  # of the last status change
    scheduled: int = NEVER  # the due time of its live entry in the timer heap
    checks: dict[str, CheckState] | None = None  # by check id; None: no active checks

    @property
    def ttl_us(self) -> int:
        return seconds_us(self.ttl_s)

    def due(self, protection: bool, protection_exited: int = 0) -> int:
        """When its next expiry transition is due.

        After expiry protection ends, a still-missing instance gets one more TTL to come back
        (heartbeats resume over a TTL, not all at once) before it is removed.
        """
        ttl = self.ttl_us
        if ttl == 0:
            return NEVER  # no TTL: heartbeats are never awaited (checks alone decide)
        missed_at = self.last_heartbeat + ttl
        if not self.missed:
            return missed_at
        if protection:
            return NEVER
        return max(missed_at + seconds_us(self.deregister_after_s), protection_exited + ttl)

    def health(self) -> InstanceStatus:
        """The worst of what its heartbeats say (missed, draining, reported) and its checks."""
        status: InstanceStatus = (
            "critical" if self.missed else "draining" if self.draining else self.reported
        )
        for state in (self.checks or {}).values():
            if _RANK[state.status] > _RANK[status]:
                status = state.status
        return status

    def check_definitions(self) -> tuple[object, ...]:
        return tuple(s.check for s in (self.checks or {}).values())

    def same_registration(self, other: Entry) -> bool:
        return (
            self.service,
            self.address,
            self.port,
            self.tags,
            self.meta,
            self.weight,
            self.ttl_s,
            self.deregister_after_s,
            self.check_definitions(),
        ) == (
            other.service,
            other.address,
            other.port,
            other.tags,
            other.meta,
            other.weight,
            other.ttl_s,
            other.deregister_after_s,
            other.check_definitions(),
        )

    def update_from(self, other: Entry) -> None:
        self.address, self.port, self.tags, self.meta = (
            other.address,
            other.port,
            other.tags,
            other.meta,
        )
        self.weight, self.ttl_s = other.weight, other.ttl_s
        self.deregister_after_s = other.deregister_after_s
        # A check that stays the same keeps what is known of it; a new one starts critical.
        old = self.checks or {}
        self.checks = {
            check_id: old[check_id] if check_id in old and old[check_id].check == new.check else new
            for check_id, new in (other.checks or {}).items()
        } or None


def entry_from_register(event: Register, at: int) -> Entry:
    entry = Entry(
        service=sys.intern(event.service),
        instance_id=event.instance_id,
        address=event.address,
        port=event.port,
        tags=tuple(event.tags) or _NO_TAGS,
        meta=dict(event.meta) or None,
        weight=event.weight,
        ttl_s=event.ttl_s,
        deregister_after_s=event.deregister_after_s,
        registered_at=at,
        last_heartbeat=at,
        reported=event.status,
        checks={
            str(check.id): CheckState.model_construct(check=check, status="critical", output="")
            for check in event.checks
        }
        or None,
    )
    entry.status = entry.health()  # a checked instance starts critical until its checks pass
    return entry


def instance_view(entry: Entry) -> Instance:
    """The wire form of an instance (fields were validated on the way in)."""
    return Instance.model_construct(
        service=entry.service,
        instance_id=entry.instance_id,
        address=entry.address,
        port=entry.port,
        tags=list(entry.tags),
        meta=dict(entry.meta or {}),
        weight=entry.weight,
        status=entry.status,
        registered_at=from_us(entry.registered_at),
        last_heartbeat=from_us(entry.last_heartbeat),
        ttl_s=entry.ttl_s,
        deregister_after_s=entry.deregister_after_s,
        load=entry.load,
        note=entry.note,
        reason=entry.reason,
        checks=list((entry.checks or {}).values()),
    )
