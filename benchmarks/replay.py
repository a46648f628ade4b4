"""Replay: events per second of `govbus replay` on a heartbeat-heavy log.

The log is written to a temporary JSON Lines file first, then read and replayed as the CLI
does (`read_log` -> `replay_log` into fresh discovery and manager workers on SQLite), so the
figures include parsing every line. Two logs of different lengths are replayed:
`whole_log_events_per_s` is the longer one's events over its whole time (workers' start and
the registrations included); `events_per_s` is the steady rate, the extra events of the
longer log over the extra time they took, which leaves out what every replay pays once.
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
    from bus.replay import replay_log

    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        path = Path(tmp) / "log.jsonl"
        write_log(path, heartbeat_log(events))
        began = time.perf_counter()
        outcome = await replay_log(read_log(path), db_url=f"sqlite+aiosqlite:///{tmp}/replay.db")
        elapsed = time.perf_counter() - began
    assert outcome.events == events
    return elapsed


async def run_replay(events: int) -> dict[str, float]:
    await _replay_once(2_000)  # imports and first connections are not the replay's speed
    short = events // 4
    short_s = await _replay_once(short)
    long_s = await _replay_once(events)
    return {
        "events_per_s": (events - short) / max(long_s - short_s, 1e-9),
        "whole_log_events_per_s": events / long_s,
        "events": float(events),
    }
