"""One registered instance in memory: a slotted record of plain values (well under 1 KB)."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from schemas import Instance, InstanceStatus, Register, Status

from ._time import NEVER, from_us, seconds_us

_NO_TAGS: tuple[str, ...] = ()


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

    @property
    def ttl_us(self) -> int:
        return seconds_us(self.ttl_s)

    def due(self, protection: bool, protection_exited: int = 0) -> int:
        """When its next expiry transition is due.

        After expiry protection ends, a still-missing instance gets one more TTL to come back
        (heartbeats resume over a TTL, not all at once) before it is removed.
        """
        ttl = self.ttl_us
        missed_at = self.last_heartbeat + ttl
        if not self.missed:
            return missed_at
        if protection:
            return NEVER
        return max(missed_at + seconds_us(self.deregister_after_s), protection_exited + ttl)

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
        ) == (
            other.service,
            other.address,
            other.port,
            other.tags,
            other.meta,
            other.weight,
            other.ttl_s,
            other.deregister_after_s,
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


def entry_from_register(event: Register, at: int) -> Entry:
    return Entry(
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
    )


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
    )
