"""What a manager worker process is told at start."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import Strategy

SOURCE = "govbus/manager"
"""The CloudEvents `source` of every event the manager publishes (replay filters on it)."""

SERVICE = "manager"
"""The RPC service name: requests arrive on queue `govbus.rpc.manager`."""

HOST_SERVICE = "host"
"""The registry service whose instances are hosts that run resources."""


@dataclass(frozen=True, slots=True)
class ManagerConfig:
    """Settings of one manager worker.

    - `queue`: the durable quorum queue it consumes events from (competing consumers share it).
    - `service`: its RPC namespace: methods `<service>.create`, ... served from
      `govbus.rpc.<service>`; `discovery`: the namespace it asks for picks (`<discovery>.pick`).
      Only tests on a shared broker change them.
    - `strategy`: how `discovery.pick` chooses a host for a new VM.
    - `pick_timeout_s`: deadline of that call; past it the create answers `unavailable`.
    - `relay`: run the outbox relay in this process (False leaves committed events to the
      relay of another process on the same database).
    """

    queue: str = "govbus.manager"
    service: str = SERVICE
    discovery: str = "discovery"
    strategy: Strategy = "least_loaded"
    pick_timeout_s: float = 2.0
    relay: bool = True
    relay_poll_s: float = 0.5
    page_scan: int = 200
