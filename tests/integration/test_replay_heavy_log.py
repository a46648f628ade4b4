"""A heartbeat-heavy log replays whole: every event fed, every instance in the end state.

Its speed is measured by `python -m benchmarks` (`replay.events_per_s`, steady heartbeats, and
`replay.whole_log_events_per_s`), not asserted here: a rate is a benchmark figure."""

from __future__ import annotations

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


async def test_a_heartbeat_heavy_log_replays_every_event():
    events = heartbeat_heavy(50, 60_000)
    outcome = await replay_log(events)
    assert outcome.stats.fed == len(events)
    assert len(outcome.state["instances"]) == 50
