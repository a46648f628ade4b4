"""Replay of check results and of protection that ends, through the fixture and `govbus replay`.

`registry.check` events replay like any other input: no check runs, and the statuses they
caused come back the same, byte for byte.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

LOGS = Path(__file__).parent.parent / "logs"
T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def govbus_replay(log: Path) -> tuple[int, bytes, str]:
    exe = shutil.which("govbus", path=str(Path(sys.executable).parent)) or "govbus"
    proc = await asyncio.create_subprocess_exec(
        exe, "replay", str(log), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode()


def by_id(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in state["instances"]}


async def test_statuses_from_check_results_replay_with_their_reasons(replay):
    await replay.start_workers()
    await replay.run(LOGS / "checks.jsonl")
    story = [
        (e.data["previous"], e.data["status"], e.data["reason"], e.data["check_id"], e.time)
        for e in replay.produced_of("registry.instance.status_changed")
    ]
    assert story == [
        (None, "critical", "registered", None, at(0)),  # checked: critical until it passes
        ("critical", "passing", "check_passed", "http", at(1.1)),  # both checks now pass
        ("passing", "warning", "check_warning", "http", at(6)),
        ("warning", "critical", "check_failed", "tcp", at(11)),
        ("critical", "warning", "check_passed", "tcp", at(16)),
        ("warning", "passing", "check_passed", "http", at(16.5)),
    ]
    failed = replay.produced_of("registry.instance.status_changed")[3]
    assert failed.data["output"] == "TCP connect 10.0.0.7:5432: connection refused"
    (db,) = (await replay.state())["instances"]
    assert db["status"] == "passing" and db["ttl_s"] == 0
    assert {c["check"]["id"]: c["status"] for c in db["checks"]} == {
        "http": "passing",
        "tcp": "passing",
    }


async def test_govbus_replay_of_check_results_is_byte_identical():
    (code, out, err), (code2, out2, _) = [
        await govbus_replay(LOGS / "checks.jsonl") for _ in range(2)
    ]
    assert (code, code2) == (0, 0), err
    assert out == out2
    (db,) = orjson.loads(out)["instances"]
    assert db["status"] == "passing"
    assert db["checks"][1]["output"] == "TCP connect 10.0.0.7:5432: success"


async def test_protection_ends_after_a_scale_down_and_the_silent_expire(replay):
    """7 of 10 fall silent at 60 s, 3 keep beating for an hour (Netflix/eureka#1267)."""
    await replay.start_workers()
    await replay.run(LOGS / "scale_down.jsonl")
    entered = replay.produced_of("registry.protection.entered")
    exited = replay.produced_of("registry.protection.exited")
    assert [e.time for e in entered] == [at(74)]  # the last beat at 54 s, ttl 20 s
    # Five TTLs of the other three beating on time: the silence is the seven's own.
    assert [(e.data["reason"], e.time) for e in exited] == [("others_beating", at(174))]
    expired = replay.produced_of("registry.instance.expired")
    assert sorted(e.data["instance_id"] for e in expired) == [f"shop-{i}" for i in range(1, 8)]
    assert {e.data["reason"] for e in expired} == {"protection_ended"}
    assert {e.time for e in expired} == {at(194)}  # one more TTL to come back after the end


async def test_govbus_replay_shows_the_stale_instances_gone_an_hour_later():
    code, out, err = await govbus_replay(LOGS / "scale_down.jsonl")
    assert code == 0, err
    state = orjson.loads(out)
    assert {k: v["status"] for k, v in by_id(state).items()} == {
        "shop-8": "passing",
        "shop-9": "passing",
        "shop-10": "passing",
    }


async def test_protection_without_evidence_ends_at_its_time_limit(replay):
    """Everyone falls silent (the bus may be at fault): protection holds, but not forever."""
    await replay.start_workers()
    await replay.run(LOGS / "protection_limit.jsonl")
    exited = replay.produced_of("registry.protection.exited")
    entered_at = replay.produced_of("registry.protection.entered")[0].time
    assert [(e.data["reason"], e.time) for e in exited] == [
        ("time_limit", entered_at + timedelta(minutes=15))
    ]
    expired = replay.produced_of("registry.instance.expired")
    assert len(expired) == 10
    assert (await replay.state())["instances"] == []
