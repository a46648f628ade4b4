"""What a checker is told at start."""

from __future__ import annotations

import os
import re
import socket
import uuid
from dataclasses import dataclass, field

SOURCE = "govbus/checker"
"""`ce-source` of the `registry.check` events checkers publish."""

SERVICE = "govbus-checker"
"""The service checkers register as; its live members share the checks."""


def _instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:60].strip(".-") or "host"
    return f"checker-{host}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class CheckerConfig:
    """Settings of one checker.

    - `service`, `instance_id`: how it registers (checkers find each other as the live
      instances of `service`); the id is unique per process by default.
    - `ttl_s`: its own heartbeat TTL. A checker killed without a word is critical `ttl_s`
      after its last heartbeat, and its checks move to the others then (then each runs within
      `FIRST_RUN_SPREAD_S`): well within 20 s.
    - `concurrency`, `connections`: at most this many runs at once, over at most this many
      pooled HTTP connections.
    - `members_every_s`: how often it asks the registry who the live checkers are (events say
      it sooner; this repairs anything a lost connection made it miss).
    - `state_every_s`: how often it reloads every check from `discovery.state`, for the same
      reason.
    """

    service: str = SERVICE
    instance_id: str = field(default_factory=_instance_id)
    address: str = "127.0.0.1"
    port: int = 1
    ttl_s: float = 6.0
    concurrency: int = 512
    connections: int = 256
    members_every_s: float = 10.0
    state_every_s: float = 300.0
    discovery: str = "discovery"
    """The RPC service of the discovery worker (tests on a shared broker change it)."""

    def __post_init__(self) -> None:
        if self.ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if self.concurrency < 1 or self.connections < 1:
            raise ValueError("concurrency and connections must be at least 1")
