"""`govbus replay --until TIME`: the state at a moment between the log's events.

The logs are the hand-made ones in tests/logs/ (see make_logs.py): in `expiry.jsonl` web-2
sends its last heartbeat at 12:00:02.52 with ttl 5 s and deregister_after 10 s, so it is
critical from 12:00:07.52 and removed at 12:00:17.52; in `protection.jsonl` four of five
instances fall silent at 12:00:01.5 (ttl 2 s), protection goes on at 12:00:03.5 and off when
their heartbeats resume at 12:00:10.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from govbus.cli import _register, app

LOGS = Path(__file__).parent.parent / "logs"


def replay(*args: str) -> tuple[int, bytes, str]:
    _register()
    result = CliRunner().invoke(app, ["replay", *args])
    return result.exit_code, result.stdout_bytes, result.stderr


def state_at(log: str, moment: str) -> dict[str, Any]:
    code, out, err = replay(str(LOGS / log), "--until", moment)
    assert code == 0, err
    state: dict[str, Any] = orjson.loads(out)
    return state


def statuses(state: dict[str, Any]) -> dict[str, str]:
    return {i["instance_id"]: i["status"] for i in state["instances"]}


def test_an_instance_is_critical_before_its_expiry_and_gone_after_it():
    before = state_at("expiry.jsonl", "2026-01-01T12:00:10Z")
    assert before["at"] == "2026-01-01T12:00:10.000000Z"
    assert statuses(before) == {"web-1": "passing", "web-2": "critical", "web-3": "passing"}
    # Its last heartbeat is what the registry had then, not anything recorded later.
    web2 = next(i for i in before["instances"] if i["instance_id"] == "web-2")
    assert web2["last_heartbeat"] == "2026-01-01T12:00:02.520000Z"

    after = state_at("expiry.jsonl", "2026-01-01T12:00:18Z")
    assert after["at"] == "2026-01-01T12:00:18.000000Z"
    assert statuses(after) == {"web-1": "passing", "web-3": "passing"}
    assert after["index"] > before["index"]


def test_the_expiry_happens_at_its_due_time_not_a_moment_earlier():
    assert "web-2" in statuses(state_at("expiry.jsonl", "2026-01-01T12:00:17.5Z"))
    assert "web-2" not in statuses(state_at("expiry.jsonl", "2026-01-01T12:00:17.53Z"))
    # Passing before its ttl ran out, critical just after.
    assert statuses(state_at("expiry.jsonl", "2026-01-01T12:00:07.5Z"))["web-2"] == "passing"
    assert statuses(state_at("expiry.jsonl", "2026-01-01T12:00:07.53Z"))["web-2"] == "critical"


def test_a_moment_after_the_last_event_lets_the_timers_run_on():
    # The log ends at 12:00:29.55 with web-1 and web-3 alive (ttl 5 s): at 12:00:40 they have
    # missed their heartbeats, and the state says so.
    state = state_at("expiry.jsonl", "2026-01-01T12:00:40+00:00")
    assert state["at"] == "2026-01-01T12:00:40.000000Z"
    assert statuses(state) == {"web-1": "critical", "web-3": "critical"}


def test_a_moment_before_the_first_event_is_refused_naming_it():
    # as GET /v1/history answers 404 naming the oldest moment: what the registry held before
    # a log begins is not in the log (it may start mid-history), so no state is made up
    code, out, err = replay(str(LOGS / "expiry.jsonl"), "--until", "2026-01-01T11:00:00Z")
    assert (code, out) == (2, b"")
    assert err.strip().splitlines() == [
        "govbus: error: --until: 2026-01-01T11:00:00.000000Z is before the log's first event "
        "(2026-01-01T12:00:00.000000Z)"
    ]


def test_the_moment_of_the_first_event_is_its_state():
    state = state_at("expiry.jsonl", "2026-01-01T12:00:00Z")
    assert state["at"] == "2026-01-01T12:00:00.000000Z"


def test_an_offset_is_honoured():
    # 13:00:10+01:00 is 12:00:10Z.
    assert state_at("expiry.jsonl", "2026-01-01T13:00:10+01:00") == state_at(
        "expiry.jsonl", "2026-01-01T12:00:10Z"
    )


def test_protection_is_on_since_it_began_and_off_since_it_ended():
    during = state_at("protection.jsonl", "2026-01-01T12:00:08Z")
    assert during["protection"] == {"on": True, "since": "2026-01-01T12:00:03.500000Z"}
    # Kept, though critical for longer than deregister_after_s (3 s): that is protection.
    assert list(statuses(during).values()).count("critical") == 4

    before = state_at("protection.jsonl", "2026-01-01T12:00:01Z")
    assert before["protection"] == {"on": False, "since": None}

    code, out, err = replay(str(LOGS / "protection.jsonl"))
    assert code == 0, err
    assert orjson.loads(out)["protection"] == {"on": False, "since": "2026-01-01T12:00:10.000000Z"}


def test_resources_at_a_moment_between_commands():
    whole = orjson.loads(replay(str(LOGS / "resources.jsonl"))[1])
    assert [r["name"] for r in whole["resources"]] == ["net-1", "vm-1", "vol-1"]
    first = min(r["created_at"] for r in whole["resources"])
    early = state_at("resources.jsonl", first)
    assert [r["name"] for r in early["resources"]] == [
        r["name"] for r in whole["resources"] if r["created_at"] == first
    ]


def test_a_bad_time_is_a_one_line_error_and_exit_2():
    for bad, says in [
        ("yesterday", "not an RFC 3339 date and time"),
        ("2026-01-01", "not an RFC 3339 date and time"),
        ("2026-01-01T12:00:00", "no UTC offset"),
        ("2026-13-01T12:00:00Z", "not an RFC 3339 date and time"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
    ]:
        code, out, err = replay(str(LOGS / "expiry.jsonl"), "--until", bad)
        assert code == 2, bad
        assert out == b""
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("govbus: error: --until: "), err
        assert says in lines[0], err


def test_a_command_that_came_before_a_reaction_live_is_made_again_after_it():
    # tests/logs/command_race.jsonl: the VM's delete reached the manager before its host's
    # deregistration did; replay, going by time, makes the VM unreachable first. The recorded
    # delete still happens (the state after the log, and every history answer after it, has no
    # VM left, as the live system had none).
    code, out, err = replay(str(LOGS / "command_race.jsonl"))
    assert code == 0, err
    assert orjson.loads(out)["resources"] == []
    assert "failed" not in err
    assert (
        state_at("command_race.jsonl", "2026-01-01T12:00:05.010000Z")["resources"][0]["status"]
        == "unreachable"
    )  # between the two, as replay ordered them
