"""`python -m discovery_worker` as a process: serves, and stops cleanly on SIGTERM (exit 0)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests._wait import wait_until


@pytest.mark.rabbitmq
def test_module_runs_and_stops_on_sigterm(tmp_path, amqp_url):
    env = {
        **os.environ,
        "GOVBUS_URL": amqp_url,
        "GOVBUS_DB": f"sqlite+aiosqlite:///{tmp_path}/d.db",
    }
    log = tmp_path / "stderr.txt"
    with log.open("w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "discovery_worker"], env=env, stderr=stderr)
    try:

        def running() -> bool:
            assert proc.poll() is None, log.read_text()
            return "discovery worker running" in log.read_text()

        wait_until(running, timeout=20, what="the worker to say it runs")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_bad_setting_is_one_line_and_exit_1(tmp_path):
    env = {
        **os.environ,
        "GOVBUS_URL": "http://nope",
        "GOVBUS_DB": f"sqlite+aiosqlite:///{tmp_path}/d.db",
    }
    done = subprocess.run(
        [sys.executable, "-m", "discovery_worker"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "discovery_worker: error: GOVBUS_URL: must start with amqp://, amqps:// or memory://"
    ]


def test_an_unreachable_store_is_one_line_naming_govbus_db():
    env = {
        **os.environ,
        "GOVBUS_URL": "memory://",
        "GOVBUS_DB": "postgresql+asyncpg://postgres@127.0.0.1:9/x",
    }
    done = subprocess.run(
        [sys.executable, "-m", "discovery_worker"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("discovery_worker: error: GOVBUS_DB: cannot open the store"), line
