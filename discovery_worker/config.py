"""What a discovery worker is told at start: names, thresholds, intervals."""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "govbus/discovery"
"""`ce-source` of every event the worker publishes (replay tells them apart by it)."""

SERVICE = "discovery"
"""The RPC service name: requests arrive on queue `govbus.rpc.discovery`."""


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    """Settings of one discovery worker.

    - `queue`: its durable quorum queue (`<queue>.dlq` takes what cannot be handled).
    - `service`: its RPC namespace: methods `<service>.services`, ... served from
      `govbus.rpc.<service>`; only tests on a shared broker change it.
    - `protection_threshold`: expiry protection starts when more than this share of the
      instances misses its heartbeats within one TTL window ...
    - `protection_min_critical`: ... and at least this many did (so a registry of 2 or 3
      instances losing one never trips it).
    - `protection_max_s`: expiry protection ends after this long whatever happens (Eureka's
      self-preservation could last forever after a real scale-down) ...
    - `protection_evidence_ttls`: ... or sooner, this many TTLs after it started (and each TTL
      after), if every instance still beating has beaten since it started (docs/discovery.md).
    - `flush_interval_s`: how often heartbeat state is written behind to the store.
    """

    queue: str = "govbus.discovery"
    service: str = SERVICE
    protection_threshold: float = 0.5
    protection_min_critical: int = 3
    protection_max_s: float = 900.0
    protection_evidence_ttls: int = 5
    flush_interval_s: float = 1.0
    source: str = SOURCE

    def __post_init__(self) -> None:
        if not 0.0 <= self.protection_threshold <= 1.0:
            raise ValueError("protection_threshold must be between 0 and 1")
        if self.protection_min_critical < 1:
            raise ValueError("protection_min_critical must be at least 1")
        if not 0 < self.protection_max_s <= 86_400:
            raise ValueError("protection_max_s must be positive (and at most a day)")
        if self.protection_evidence_ttls < 1:
            raise ValueError("protection_evidence_ttls must be at least 1")
        if self.flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
