"""The discovery worker: the live service registry behind `discovery.*`.

`python -m discovery_worker` (or `govbus discovery`) runs it; `bootstrap(...)` builds one in
a program or a test. `RPC_METHODS` and `EVENT_HANDLERS` (in `discovery_worker.routing`) list
everything it answers and reacts to. See docs/discovery.md for the rules it follows.
"""

from .bootstrap import bootstrap
from .config import SOURCE, DiscoveryConfig
from .registry import Registry
from .routing import EVENT_HANDLERS, RPC_METHODS
from .worker import DiscoveryWorker

__all__ = [
    "EVENT_HANDLERS",
    "RPC_METHODS",
    "SOURCE",
    "DiscoveryConfig",
    "DiscoveryWorker",
    "Registry",
    "bootstrap",
]
