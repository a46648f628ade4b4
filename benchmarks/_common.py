"""What every benchmark shares: the payload models, alternation of systems and the figures.

Each benchmark is a set of *trials*, one per system and round. The systems take turns within a
round and the order rotates from round to round (A B C, B C A, C A B, ...), so a machine that
slows down or speeds up during the run favours none of them; a system's figure is the median of
its trials.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from schemas import Event

SYSTEMS = ("aiopika", "faststream", "govbus")


class BenchTick(Event):
    """The event every system publishes: a heartbeat-sized payload with a few typed fields."""

    TYPE: ClassVar[str] = "bench.tick"

    service: str
    instance_id: str
    seq: int
    status: str = "passing"
    note: str = ""
    load: float | None = None


def tick_model(event_type: str) -> type[BenchTick]:
    """A `BenchTick` whose type (= routing key) is unique to this run, so nobody else's queue
    bound on `govbus.events` receives benchmark traffic and ours receives nobody else's."""
    return type("BenchTick", (BenchTick,), {"TYPE": event_type, "__module__": __name__})


def make_tick(model: type[BenchTick], seq: int) -> BenchTick:
    return model(service="bench", instance_id=f"bench-{seq % 97}", seq=seq, note="ok", load=0.25)


class EchoRequest(BaseModel):
    """The RPC request every system sends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    seq: int


class EchoReply(BaseModel):
    """The RPC reply every system answers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    seq: int
    ok: bool = True


def unique(prefix: str = "bench") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[rank]


@dataclass
class Trials:
    """Figures of one benchmark: every trial's result per system and metric."""

    name: str
    results: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def add(self, system: str, figures: Mapping[str, float]) -> None:
        per_metric = self.results.setdefault(system, {})
        for metric, value in figures.items():
            per_metric.setdefault(metric, []).append(value)

    def medians(self) -> dict[str, dict[str, float]]:
        return {
            system: {metric: statistics.median(values) for metric, values in metrics.items()}
            for system, metrics in self.results.items()
        }


Trial = Callable[[], Awaitable[Mapping[str, float]]]


async def alternate(
    name: str,
    trials: Mapping[str, Trial],
    *,
    rounds: int,
    log: Callable[[str], None],
) -> Trials:
    """Run each system's trial `rounds` times, rotating the order every round."""
    out = Trials(name)
    systems = list(trials)
    for r in range(rounds):
        order = systems[r % len(systems) :] + systems[: r % len(systems)]
        for system in order:
            began = time.perf_counter()
            figures = await trials[system]()
            out.add(system, figures)
            shown = ", ".join(f"{k}={v:,.1f}" for k, v in figures.items())
            took = time.perf_counter() - began
            log(f"  {name} round {r + 1}/{rounds} {system}: {shown} ({took:.1f} s)")
    return out
