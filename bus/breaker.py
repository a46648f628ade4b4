"""A circuit breaker per RPC method, so callers fail fast while a worker is down."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from bus.errors import CircuitOpen


@dataclass(slots=True)
class CircuitBreaker:
    """Closed → open after `threshold` consecutive failures → half-open after `cooldown_s`.

    Half-open lets one probe through; its success closes the breaker, its failure opens it
    again for another cooldown.
    """

    name: str
    threshold: int = 5
    cooldown_s: float = 5.0
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    clock: object = field(default=time.monotonic, repr=False)

    def _now(self) -> float:
        return self.clock()  # type: ignore[operator, no-any-return]

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return "closed"
        if self._now() - self.opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def before_call(self) -> None:
        """Raise `CircuitOpen` unless a call may go through now."""
        state = self.state
        if state == "closed":
            return
        if state == "half_open" and not self.probing:
            self.probing = True
            return
        retry_after = self.cooldown_s - (self._now() - (self.opened_at or 0.0))
        raise CircuitOpen(
            f"{self.name}: circuit open after {self.failures} consecutive failures",
            {"method": self.name, "failures": self.failures},
            retry_after=max(retry_after, 0.1),
        )

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def failure(self) -> None:
        self.failures += 1
        self.probing = False
        if self.failures >= self.threshold or self.opened_at is not None:
            self.opened_at = self._now()
