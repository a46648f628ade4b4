"""Per-service indexes: what a blocking read of one service waits on.

The registry `index` grows with every change, heartbeats included. A reader of one service
wants to hear of changes to what its answer shows (an instance added, removed, re-registered,
drained, or changing status; expiry protection turning on or off), not of every heartbeat of
every service: a change to another service must not wake it (Consul's users complain that
theirs does: hashicorp/consul#1244, #3890). So each service keeps the registry index of its
own last such change; heartbeat times, load and notes (which change without a status change)
do not move it, and an answer shows them as they are when it is made.

Indexes only grow: after a restart every service starts at the index the journal restored,
which is above any index answered before.
"""

from __future__ import annotations


class ServiceIndexes:
    def __init__(self) -> None:
        self._by_service: dict[str, int] = {}  # kept after a service empties: its 404's index
        self._base = 0
        self._protection = 0
        self.listed = 0
        """The index of the last change to any service: the summary's index."""

    def changed(self, service: str, index: int) -> None:
        self._by_service[service] = index
        self.listed = index

    def protection_changed(self, index: int) -> None:
        self._protection = self.listed = index

    def restored(self, index: int) -> None:
        self._by_service.clear()
        self._base = self._protection = self.listed = index

    def of(self, service: str) -> int:
        return max(self._by_service.get(service, self._base), self._protection)
