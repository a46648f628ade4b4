"""Checkers as processes: `govbus checker` killed with SIGKILL has its checks taken over
within 20 s (RabbitMQ), and `govbus up` runs a checker on the embedded bus."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import httpx
import pytest

from bus import Bus
from discovery_worker import SOURCE
from discovery_worker import bootstrap as discovery
from health_checker import SOURCE as CHECKER_SOURCE
from health_checker import Checker, CheckerConfig
from schemas import Register
from tests._targets import Targets
from tests._wait import eventually, wait_until
from tests.e2e._up import GOVBUS, free_port, start_up, stop, wait_ready


@pytest.mark.rabbitmq
async def test_a_checker_killed_with_sigkill_has_its_checks_taken_over(vhost_url, tmp_path):
    async with contextlib.AsyncExitStack() as stack, Targets() as targets:
        worker_bus = Bus(vhost_url, source=SOURCE)
        await worker_bus.start()
        stack.push_async_callback(worker_bus.close)
        worker = await discovery(bus=worker_bus, db_url=f"sqlite+aiosqlite:///{tmp_path}/d.db")
        await worker.start()
        stack.push_async_callback(worker.stop)
        bus = Bus(vhost_url, source=CHECKER_SOURCE)
        await bus.start()
        stack.push_async_callback(bus.close)
        mine = Checker(bus=bus, config=CheckerConfig())
        await mine.start()
        stack.push_async_callback(mine.stop)
        env = {**os.environ, "GOVBUS_URL": vhost_url}
        with (tmp_path / "checker.log").open("w") as log:
            other = subprocess.Popen([GOVBUS, "checker"], env=env, stderr=log, stdout=log)
        try:
            await eventually(lambda: len(mine.members) == 2, timeout=20, what="two checkers")
            names = [f"i{n:02}" for n in range(20)]
            for name in names:
                url_ = f"{targets.url}/hit/{name}"
                await bus.publish(
                    Register(
                        service="web", instance_id=name, address="127.0.0.1", port=80,
                        ttl_s=0, checks=[{"http": url_, "interval_s": 1}],
                    )
                )  # fmt: skip
            await eventually(lambda: all(len(targets.hits[n]) >= 2 for n in names), timeout=20)
            theirs = {iid for iid, _ in {(n, "check-1") for n in names} - mine.owned}
            assert theirs and len(theirs) < 20  # the other process runs a share
            other.send_signal(signal.SIGKILL)
            other.wait(timeout=10)
            killed = time.monotonic()
            await eventually(
                lambda: all(targets.hits[n][-1] > killed for n in theirs),
                timeout=20,
                what="the killed checker's checks to run again",
            )
            assert len(mine.owned) == 20
        finally:
            if other.poll() is None:
                other.kill()
                other.wait()


def test_govbus_up_runs_a_checker_and_refuses_a_bad_check(tmp_path):
    port = free_port()
    proc = start_up(tmp_path, port, GOVBUS_AUTH="disabled")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, port)
        bad = {
            "service": "web", "instance_id": "web-1", "address": "127.0.0.1", "port": port,
            "checks": [{"http": f"{base}/healthz", "interval_s": 0.5}],
        }  # fmt: skip
        r = httpx.post(f"{base}/v1/instances", json=bad)
        assert r.status_code == 422
        assert "checks.0.interval_s" in r.text
        checks = [{"http": f"{base}/healthz", "interval_s": 1}, {"tcp": f"127.0.0.1:{port}"}]
        good = {**bad, "ttl_s": 0, "checks": checks}
        assert httpx.post(f"{base}/v1/instances", json=good).status_code == 202

        def status() -> object:
            r = httpx.get(f"{base}/v1/services/web")
            return r.status_code == 200 and r.json()["instances"][0]["status"] == "passing"

        wait_until(status, timeout=20, interval=0.1, what="web to pass its checks")
        checker = httpx.get(f"{base}/v1/services/govbus-checker").json()
        assert [i["status"] for i in checker["instances"]] == ["passing"]
    finally:
        code, _, err = stop(proc)
    assert code == 0, err


@pytest.mark.rabbitmq
def test_govbus_checker_stops_on_sigterm_with_exit_0(vhost_url, tmp_path):
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen([GOVBUS, "checker", "--url", vhost_url], stderr=stderr)
    try:

        def running() -> bool:
            assert proc.poll() is None, log.read_text()
            return "health checker running" in log.read_text()

        wait_until(running, timeout=20, what=lambda: f"the checker to run: {log.read_text()}")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_govbus_checker_with_a_bad_url_is_one_line():
    done = subprocess.run(
        [GOVBUS, "checker", "--url", "http://nope"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "govbus: error: GOVBUS_URL: must start with amqp://, amqps:// or memory://"
    ]


@pytest.mark.parametrize("component", ["checker", "discovery", "manager", "edge"])
def test_a_component_alone_on_the_embedded_bus_is_refused_in_one_line(component, tmp_path):
    done = subprocess.run(
        [GOVBUS, component, "--url", "memory://"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=tmp_path,
        # the edge checks its auth settings first: they are not what this test is about
        env={**os.environ, "GOVBUS_AUTH": "disabled"},
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"govbus: error: govbus {component} alone needs a shared bus: GOVBUS_URL=amqp://... "
        "(the embedded bus, memory://, lives inside one process: `govbus up` runs every "
        "component on it)"
    ]
