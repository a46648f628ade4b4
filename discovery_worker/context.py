"""What every discovery handler is given besides its message."""

from __future__ import annotations

from dataclasses import dataclass

from .balancer import Balancer
from .journal import Journal
from .registry import Registry


@dataclass(frozen=True, slots=True)
class Context:
    """The dependencies of the handlers (`ctx`).

    - `registry`: the live registry in memory (the state every handler reads or changes);
    - `journal`: its durable side: inbox marks, and the flush an event waits for;
    - `balancer`: load-balanced picks over the registry.
    """

    registry: Registry
    journal: Journal
    balancer: Balancer
