"""`govbus record` on RabbitMQ: live from govbus.events with a pattern, or the govbus.log stream
from its first offset; every line flushed; SIGTERM stops it cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import sys
from pathlib import Path

import pytest

from bus.client import Bus
from bus.eventlog import read_log
from schemas import Deregister, Heartbeat, Register, ResourceObserved
from tests._wait import eventually

pytestmark = pytest.mark.rabbitmq


def exe() -> str:
    return shutil.which("govbus", path=str(Path(sys.executable).parent)) or "govbus"


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


async def test_record_live_with_a_pattern_until_sigterm(vhost_url, tmp_path):
    out = tmp_path / "live.jsonl"
    proc = await asyncio.create_subprocess_exec(
        exe(), "record", "--out", str(out), "--url", vhost_url, "registry.*",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 30)
        assert b"recording registry.* on govbus.events" in line
        async with Bus(vhost_url, source="web") as bus:
            await bus.publish(Register(service="web", instance_id="web-1", address="h", port=80))
            await bus.publish(ResourceObserved(host="web-1"))  # not matched by the pattern
            await bus.publish(Heartbeat(service="web", instance_id="web-1", load=0.5))
        # Flushed line by line: readable while the recorder still runs.
        await eventually(lambda: count_lines(out) == 2, timeout=10, what="two recorded lines")
        assert proc.returncode is None
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 0, err
    assert b"recorded 2 event(s)" in err
    events = list(read_log(out))
    assert [e.type for e in events] == ["registry.register", "registry.heartbeat"]
    assert {e.source for e in events} == {"web"}
    assert events[1].data == {
        "service": "web", "instance_id": "web-1", "status": "passing", "note": "", "load": 0.5
    }  # fmt: skip


async def test_record_from_start_reads_the_log_stream(vhost_url, tmp_path):
    async with Bus(vhost_url, source="db") as bus:
        for i in range(3):
            await bus.publish(Deregister(service="db", instance_id=f"db-{i}"))
    out = tmp_path / "history.jsonl"
    proc = await asyncio.create_subprocess_exec(
        exe(), "record", "--out", str(out), "--url", vhost_url, "--from-start", "--count", "3",
        "registry.deregister", stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    ids = [e.data["instance_id"] for e in read_log(out) if e.source == "db"]
    assert ids == ["db-0", "db-1", "db-2"]


def test_from_start_needs_rabbitmq(tmp_path):
    from typer.testing import CliRunner

    from govbus.cli import _register, app

    _register()
    args = ["record", "--out", str(tmp_path / "x.jsonl"), "--url", "memory://", "--from-start"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "--from-start reads the RabbitMQ stream govbus.log" in result.stderr
