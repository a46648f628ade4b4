"""The manager's composition root: real adapters for what is not given, fakes in tests."""

from __future__ import annotations

from bus.client import Bus
from bus.clock import Clock
from bus.store import Store
from bus.worker import worker_store
from manager_worker.config import ManagerConfig
from manager_worker.worker import ManagerWorker


async def bootstrap(
    *,
    bus: Bus,
    store: Store | None = None,
    db_url: str | None = None,
    clock: Clock | None = None,
    config: ManagerConfig | None = None,
) -> ManagerWorker:
    """A manager worker on `bus`, not yet started.

    - `store`: used as is (the caller closes it); else one is opened on `db_url` (default
      `GOVBUS_DB`) and closed by `stop()`.
    - `clock`: every time the worker writes comes from it (default: the bus's clock).
    - `config`: queue, RPC service name, placement strategy and deadline.

    Nothing connects here: `await worker.start()` does (and connects the bus if it is not).
    """
    store, owns_store = worker_store(store, db_url)
    return ManagerWorker(
        bus=bus,
        store=store,
        clock=clock or bus.clock,
        config=config or ManagerConfig(),
        owns_store=owns_store,
    )
