"""Replay: events per second of `govbus replay` on a heartbeat-heavy log.

The log is written to a temporary JSON Lines file first, then read and replayed as the CLI
does (`read_log` -> `replay_log` into fresh discovery and manager workers on SQLite), so the
figures include parsing every line. `whole_log_events_per_s` is the whole log over the whole
time (workers' start and the registrations, a few SQLite transactions each, included);
`events_per_s` is the steady rate: the same log through `bus.replay.Replay` (what
`replay_log` drives) with govbus's workers, timing only the heartbeats, which are most of any
real log.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bus.eventlog import LogEvent, read_log, write_log

START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def heartbeat_log(events: int, instances: int = 200) -> Iterator[LogEvent]:
    """`instances` registrations, then heartbeats round-robin, 1 ms apart in event time."""
    ns = uuid.UUID("6f1c8c2e-3f1b-4a59-9a77-0a3c3b6f8f10")
    at = START
    for i in range(instances):
        yield LogEvent(
            str(uuid.uuid5(ns, f"r{i}")),
            "registry.register",
            "bench-agent",
            at,
            {
                "service": f"svc-{i % 10}",
                "instance_id": f"inst-{i}",
                "address": "10.0.0.1",
                "port": 8000 + i,
                "ttl_s": 30,
            },
        )
        at += timedelta(milliseconds=1)
    for n in range(events - instances):
        i = n % instances
        yield LogEvent(
            str(uuid.uuid5(ns, f"h{n}")),
            "registry.heartbeat",
            "bench-agent",
            at,
            {"service": f"svc-{i % 10}", "instance_id": f"inst-{i}", "load": 0.5},
        )
        at += timedelta(milliseconds=1)


async def _replay_once(events: int) -> float:
    from govbus.replay import replay_log

    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        path = Path(tmp) / "log.jsonl"
        write_log(path, heartbeat_log(events))
        began = time.perf_counter()
        outcome = await replay_log(read_log(path), db_url=f"sqlite+aiosqlite:///{tmp}/replay.db")
        elapsed = time.perf_counter() - began
    assert outcome.events == events
    return elapsed


async def _steady(events: int, instances: int = 200) -> float:
    """Heartbeats per second once the workers run and the instances are registered."""
    from bus.replay import Replay
    from govbus.replay import start_workers

    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        path = Path(tmp) / "log.jsonl"
        write_log(path, heartbeat_log(events, instances))
        async with Replay(capture=False) as replay:
            await start_workers(replay, db_url=f"sqlite+aiosqlite:///{tmp}/replay.db")
            log = read_log(path)
            for _ in range(instances):
                await replay.feed(next(log))
            await replay.settle()
            began = time.perf_counter()
            fed = 0
            for event in log:
                await replay.feed(event)
                fed += 1
            elapsed = time.perf_counter() - began
    return fed / elapsed


async def run_replay(events: int) -> dict[str, float]:
    await _replay_once(2_000)  # imports and first connections are not the replay's speed
    whole_s = await _replay_once(events)
    return {
        "events_per_s": await _steady(events),
        "whole_log_events_per_s": events / whole_s,
        "events": float(events),
    }
