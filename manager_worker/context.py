"""What every manager handler is given besides its message."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bus.clock import Clock
from bus.store import Store
from manager_worker.placement import Placement


@dataclass(frozen=True, slots=True)
class Context:
    """The dependencies of the handlers (`ctx`).

    - `consumer`: the inbox name events are de-duplicated under (the worker queue's name, so
      competing consumers on one queue share it).
    - `notify`: wakes the outbox relay after a commit.
    """

    store: Store
    clock: Clock
    placement: Placement
    notify: Callable[[], None]
    consumer: str
    page_scan: int = 200
