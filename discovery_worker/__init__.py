"""The discovery worker: the live service registry behind `discovery.*`.

`python -m discovery_worker` (or `govbus discovery`) runs it; `bootstrap(...)` builds one in
a program or a test. See docs/discovery.md for the rules it follows.
"""

from .bootstrap import DiscoveryWorker, bootstrap
from .config import SOURCE, DiscoveryConfig
from .handlers import EVENT_HANDLERS, RPC_METHODS
from .registry import Registry

__all__ = [
    "EVENT_HANDLERS",
    "RPC_METHODS",
    "SOURCE",
    "DiscoveryConfig",
    "DiscoveryWorker",
    "Registry",
    "bootstrap",
]
