"""The health checker: runs the registry's active checks (HTTP, TCP) and publishes their
results as `registry.check` events. `govbus checker` runs one; several share the checks."""

from bus.client import Bus

from .checker import Checker
from .config import SERVICE, SOURCE, CheckerConfig

__all__ = ["SERVICE", "SOURCE", "Checker", "CheckerConfig", "bootstrap"]


async def bootstrap(*, bus: Bus, config: CheckerConfig | None = None) -> Checker:
    """A checker on `bus`, not yet started (`await checker.start()` connects)."""
    return Checker(bus=bus, config=config or CheckerConfig())
