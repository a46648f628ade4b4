"""The manager worker: resource inventory, placement and lifecycle (see docs/manager.md).

`bootstrap(bus=...)` builds a `ManagerWorker`; `serve(settings)` runs one as a process until
SIGTERM. `RPC_METHODS` and `EVENT_HANDLERS` (in `manager_worker.routing`) list everything it
answers and reacts to.
"""

from manager_worker.bootstrap import bootstrap
from manager_worker.config import SOURCE, ManagerConfig
from manager_worker.process import serve
from manager_worker.routing import EVENT_HANDLERS, RPC_METHODS
from manager_worker.worker import ManagerWorker

__all__ = [
    "EVENT_HANDLERS",
    "RPC_METHODS",
    "SOURCE",
    "ManagerConfig",
    "ManagerWorker",
    "bootstrap",
    "serve",
]
