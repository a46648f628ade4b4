"""Replay speed on a heartbeat-heavy log (the issue's target: 50,000 events/s on this machine;
`python -m benchmarks` reports it as `replay.events_per_s`). The assertion is a floor that
catches a regression even on a loaded machine; the rate is printed (`pytest -s`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bus.eventlog import LogEvent
from govbus.replay import replay_log

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def heartbeat_heavy(instances: int, heartbeats: int) -> list[LogEvent]:
    events = [
        LogEvent(
            f"reg-{i}",
            "registry.register",
            "web",
            T0 + timedelta(milliseconds=i),
            {"service": "web", "instance_id": f"web-{i}", "address": "10.0.0.1", "port": 80},
        )
        for i in range(instances)
    ]
    at = T0 + timedelta(seconds=1)
    for j in range(heartbeats):
        at += timedelta(microseconds=200)
        name = f"web-{j % instances}"
        data = {"service": "web", "instance_id": name, "status": "passing", "load": 0.5}
        events.append(LogEvent(f"hb-{j}", "registry.heartbeat", "web", at, data))
    return events


async def test_a_heartbeat_heavy_log_replays_fast():
    events = heartbeat_heavy(50, 60_000)
    started = time.perf_counter()
    outcome = await replay_log(events)
    rate = len(events) / (time.perf_counter() - started)
    print(f"\nreplay: {rate:,.0f} events/s ({len(events)} events, workers' start included)")
    assert outcome.stats.fed == len(events)
    assert len(outcome.state["instances"]) == 50
    assert rate > 15_000
