"""The discovery worker's composition root: real adapters for what is not given, fakes in
tests (`memory://`, an SQLite file, a `VirtualClock`, a seeded `Random`)."""

from __future__ import annotations

import random

from bus.client import Bus
from bus.clock import Clock
from bus.store import Store
from bus.worker import worker_store

from .config import DiscoveryConfig
from .worker import DiscoveryWorker

__all__ = ["DiscoveryWorker", "bootstrap"]


async def bootstrap(
    *,
    bus: Bus,
    store: Store | None = None,
    db_url: str | None = None,
    clock: Clock | None = None,
    config: DiscoveryConfig | None = None,
    rng: random.Random | None = None,
) -> DiscoveryWorker:
    """A discovery worker on `bus`, not yet started.

    - `store`: used as is (the caller closes it); else one is opened on `db_url` (default
      `GOVBUS_DB`) and closed by `stop()`.
    - `clock`: every time the worker reads comes from it (default: the bus's clock).
    - `config`: queue, RPC service name, expiry protection, flush interval.
    - `rng`: what random picks draw from (a seeded one makes them reproducible).

    Nothing connects here: `await worker.start()` does (and connects the bus if it is not).
    """
    store, owns_store = worker_store(store, db_url)
    return DiscoveryWorker(
        bus=bus,
        store=store,
        owns_store=owns_store,
        clock=clock or bus.clock,
        config=config or DiscoveryConfig(),
        rng=rng,
    )
