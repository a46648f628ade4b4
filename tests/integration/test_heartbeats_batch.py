"""`registry.heartbeats`: many heartbeats in one message, applied as that many heartbeats;
a bad entry rejects the message with a reason naming the entry, and the worker goes on."""

from __future__ import annotations

from typing import Any

from schemas import Heartbeat, Heartbeats
from tests._discovery import dead_letters, harness, instances, reg
from tests._wait import eventually


def reported(h: Any) -> list[tuple[str, str | None, str, str]]:
    return [t for t in h.transitions() if t[3] == "reported"]


async def test_a_batch_has_the_effect_of_each_heartbeat(broker_url, tmp_path, unique):
    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        for name in ("a", "b", "c"):
            await h.publish(reg(unique, name))
        await eventually(lambda: len(h.worker.registry.by_service.get(unique, {})) == 3)

        beats = [
            Heartbeat(service=unique, instance_id=f"{unique}-a", status="warning", note="hot"),
            Heartbeat(service=unique, instance_id=f"{unique}-b", load=0.5),
            Heartbeat(service=unique, instance_id=f"{unique}-ghost"),
            Heartbeat(service=unique, instance_id=f"{unique}-c", status="critical"),
        ]
        batch_id = await h.publish(Heartbeats(beats=beats))
        await eventually(
            lambda: len(h.of("registry.heartbeat.unknown")) == 1 and len(reported(h)) == 2,
            what="the batch's derived events",
        )
        seen = await instances(h)
        assert (seen["a"]["status"], seen["a"]["note"]) == ("warning", "hot")
        assert (seen["b"]["status"], seen["b"]["load"]) == ("passing", 0.5)
        assert seen["c"]["status"] == "critical"
        assert sorted(reported(h)) == [
            (f"{unique}-a", "passing", "warning", "reported"),
            (f"{unique}-c", "passing", "critical", "reported"),
        ]
        (unknown,) = h.of("registry.heartbeat.unknown")
        assert unknown.instance_id == f"{unique}-ghost"
        # what each beat derives has an id of its own, none of them the batch's
        ids = [meta.id for meta, _ in h.events]
        assert len(ids) == 9  # 3 registered + 3 first statuses, then 2 transitions + 1 unknown
        assert len(set(ids)) == len(ids) and batch_id not in ids


async def test_a_bad_entry_dead_letters_the_message_naming_the_entry(broker_url, tmp_path, unique):
    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        await h.publish(reg(unique, "a"))
        await eventually(lambda: f"{unique}-a" in h.worker.registry.instances)

        good = {"service": unique, "instance_id": f"{unique}-a", "status": "warning"}
        bad_entry = {"beats": [good, good, {"service": unique, "instance_id": "", "status": "x"}]}
        too_many = {"beats": [good] * 1001}
        empty: dict[str, Any] = {"beats": []}
        publish = h.client.publisher.publish_raw
        await publish("registry.heartbeats", bad_entry, event_id=f"{unique}-entry")
        await publish("registry.heartbeats", too_many, event_id=f"{unique}-many")
        await publish("registry.heartbeats", empty, event_id=f"{unique}-empty")

        reasons = await dead_letters(h, 3)
        assert reasons["entry"].startswith("invalid registry.heartbeats: beats.2.instance_id")
        assert "beats.2.status" in reasons["entry"]
        assert reasons["many"].startswith(
            "invalid registry.heartbeats: beats: List should have at most 1000"
        )
        assert reasons["empty"].startswith(
            "invalid registry.heartbeats: beats: List should have at least 1"
        )
        # nothing of a rejected batch was applied, and the worker still serves
        assert (await instances(h))["a"]["status"] == "passing"
        assert h.worker.ready
