"""`discovery.pick`: one instance of a service, load-balanced.

Candidates are the `passing` instances (with the tag, if asked); only when there are none,
the `warning` ones. `draining` and `critical` instances are never picked. Strategies:

- `round_robin`: exact rotation over the candidates in instance-id order, one counter per
  service and tag;
- `random`: uniform;
- `weighted`: random in proportion to `weight`;
- `least_loaded`: the lowest heartbeat `load` (none reported counts as 0), then the fewest
  resources placed on it (from `resource.*` events), then the instance id.
"""

from __future__ import annotations

import random
from collections import Counter

from bus.errors import Unavailable
from schemas import Strategy

from ._entry import Entry
from .registry import Registry


class Balancer:
    """Picks instances from a registry; holds the round-robin counters and the random source."""

    def __init__(self, registry: Registry, rng: random.Random | None = None) -> None:
        self.registry = registry
        self.rng = rng or random.Random()
        self._turns: Counter[tuple[str, str | None]] = Counter()

    def candidates(self, service: str, tag: str | None = None) -> list[Entry]:
        group = self.registry.by_service.get(service, {})
        usable = [e for e in group.values() if tag is None or tag in e.tags]
        passing = [e for e in usable if e.status == "passing"]
        chosen = passing or [e for e in usable if e.status == "warning"]
        chosen.sort(key=lambda e: e.instance_id)
        return chosen

    def pick(
        self, service: str, strategy: Strategy = "round_robin", tag: str | None = None
    ) -> Entry:
        """One instance; `Unavailable` (naming what there is) when none may be picked."""
        candidates = self.candidates(service, tag)
        if not candidates:
            group = self.registry.by_service.get(service, {})
            statuses = Counter(e.status for e in group.values())
            where = f"service {service!r}" + (f" with tag {tag!r}" if tag else "")
            raise Unavailable(
                f"no passing or warning instance of {where}"
                + (
                    f" (instances: {dict(sorted(statuses.items()))})"
                    if group
                    else " (none registered)"
                ),
                {"service": service, "tag": tag, "statuses": dict(statuses)},
            )
        if strategy == "round_robin":
            key = (service, tag)
            turn = self._turns[key]
            self._turns[key] = turn + 1
            return candidates[turn % len(candidates)]
        if strategy == "random":
            return self.rng.choice(candidates)
        if strategy == "weighted":
            return self.rng.choices(candidates, weights=[e.weight for e in candidates])[0]
        placed = self.registry.placed
        return min(
            candidates, key=lambda e: (e.load or 0.0, placed.get(e.instance_id, 0), e.instance_id)
        )
