"""History: how long `GET /v1/history?at=` takes to compute over a long log.

A heartbeat-heavy log (`benchmarks.replay.heartbeat_log`: 200 instances, then heartbeats 1 ms
apart) is kept by a `bus.history.History` with govbus's workers, snapshotting every
`govbus.history.SNAPSHOT_EVERY` events, as the edge does. Then it is asked for the state at
moments across the log: half of them the worst case, the last event before a snapshot (the
longest tail to replay), half anywhere. `query_ms` is the slowest answer, `query_p50_ms` the
median; `ingest_per_s` is how fast the history kept and followed the log (the store's writes,
the follower's replay and the snapshots).
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from benchmarks.replay import START, heartbeat_log

INSTANCES = 200


async def run_history(events: int, log: Callable[[str], None], queries: int = 10) -> dict[str, Any]:
    from bus.history import History
    from govbus.history import SNAPSHOT_EVERY
    from govbus.replay import Workers

    with tempfile.TemporaryDirectory(prefix="govbus-bench-history-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/history.db"
        history = History(url, Workers, snapshot_every=SNAPSHOT_EVERY)
        await history.start()
        try:
            began = time.perf_counter()
            kept = await history.ingest(heartbeat_log(events, INSTANCES))
            ingest_s = time.perf_counter() - began
            log(f"  history: kept {kept:,} events in {ingest_s:.1f} s")
            rng = random.Random(7)
            # Event n happened at START + n ms: the one before each snapshot has the longest tail.
            worst = [(k * SNAPSHOT_EVERY) - 1 for k in range(1, events // SNAPSHOT_EVERY)]
            picks = rng.sample(worst, min(queries // 2, len(worst)))
            picks += [rng.randrange(INSTANCES, events) for _ in range(queries - len(picks))]
            timings = []
            for n in picks:
                moment = START + timedelta(milliseconds=n)
                began = time.perf_counter()
                state = await history.at(moment)
                timings.append((time.perf_counter() - began) * 1000)
                assert len(state["instances"]) == INSTANCES
        finally:
            await history.stop()
    return {
        "events": events,
        "snapshot_every": SNAPSHOT_EVERY,
        "ingest_per_s": round(kept / ingest_s),
        "query_ms": round(max(timings), 1),
        "query_p50_ms": round(statistics.median(timings), 1),
    }
