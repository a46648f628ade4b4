"""Every instance says why its status last changed (`reason`), in every view: RPC answers,
`govbus replay`, history; kept across a restart, and added to a store written before it."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

from bus import Bus
from bus.eventlog import read_log
from discovery_worker import SOURCE, DiscoveryConfig, bootstrap
from govbus.replay import replay_log
from schemas import Heartbeat, Register
from tests._wait import eventually

LOGS = Path(__file__).parent.parent / "logs"


async def test_replay_shows_the_reason_of_each_last_change():
    moment = datetime(2026, 1, 1, 12, 0, 10, tzinfo=UTC)
    state = (await replay_log(read_log(LOGS / "expiry.jsonl"), until=moment)).state
    reasons = {i["instance_id"]: i["reason"] for i in state["instances"]}
    assert reasons == {"web-1": "registered", "web-2": "heartbeat_missed", "web-3": "registered"}


async def test_drain_says_so(replay):
    await replay.start_workers()
    await replay.run(LOGS / "drain.jsonl")
    state = await replay.state()
    drained = [i for i in state["instances"] if i["status"] == "draining"]
    assert drained and {i["reason"] for i in drained} == {"drain_requested"}


async def worker_state(url: str, db_url: str, unique: str, publish: list | None = None) -> dict:
    """Start a discovery worker on `db_url`, publish, read `discovery.state`, stop it."""
    config = DiscoveryConfig(queue=f"{unique}.discovery", service=f"{unique}.discovery")
    wbus, client = Bus(url, source=SOURCE), Bus(url, source="test")
    await wbus.start()
    await client.start()
    worker = await bootstrap(bus=wbus, db_url=db_url, config=config)
    await worker.start()
    try:
        for event in publish or []:
            await client.publish(event)
        if publish:
            await eventually(
                lambda: (
                    worker.registry.instances.get("r-1") is not None
                    and worker.registry.instances["r-1"].status == "warning"
                ),
                what="r-1 warning",
            )
        return dict(await client.call(f"{unique}.discovery.state", {}, timeout=5))
    finally:
        await worker.stop()
        await client.close()
        await wbus.close()


async def test_the_reason_outlives_a_restart_and_old_stores_get_the_column(tmp_path):
    unique = f"reason-{uuid4().hex[:8]}"
    url = f"memory://{unique}"
    path = tmp_path / "d.db"
    db_url = f"sqlite+aiosqlite:///{path}"
    register = Register(service="svc", instance_id="r-1", address="10.0.0.1", port=80)
    warning = Heartbeat(service="svc", instance_id="r-1", status="warning")

    first = await worker_state(url, db_url, unique, [register, warning])
    assert [(i["status"], i["reason"]) for i in first["instances"]] == [("warning", "reported")]
    again = await worker_state(url, db_url, unique)
    assert [(i["status"], i["reason"]) for i in again["instances"]] == [("warning", "reported")]

    # A store from before `reason`: the column is added, the instance's reason is unknown.
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE discovery_instances DROP COLUMN reason")
    old = await worker_state(url, db_url, unique)
    assert [(i["status"], i["reason"]) for i in old["instances"]] == [("warning", None)]
