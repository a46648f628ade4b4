"""Replay: events per second of `govbus replay` on a heartbeat-heavy log.

The log is written to a temporary JSON Lines file first, then read and replayed as the CLI
does (`read_log` -> `replay_log` into fresh discovery and manager workers on SQLite), so the
figure includes parsing every line.
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


async def run_replay(events: int) -> dict[str, float]:
    from bus.replay import replay_log

    with tempfile.TemporaryDirectory(prefix="govbus-bench-") as tmp:
        path = Path(tmp) / "log.jsonl"
        write_log(path, heartbeat_log(events))
        began = time.perf_counter()
        outcome = await replay_log(read_log(path), db_url=f"sqlite+aiosqlite:///{tmp}/replay.db")
        elapsed = time.perf_counter() - began
    assert outcome.events == events
    return {"events_per_s": events / elapsed, "events": float(events), "seconds": elapsed}
