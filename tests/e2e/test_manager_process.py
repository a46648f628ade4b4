"""`python -m manager_worker` as a process: ready, SIGTERM stops it cleanly (exit 0), and bad
settings or an unreachable broker are one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "manager_worker"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_stops_the_worker_gracefully(tmp_path):
    db = tmp_path / "manager.db"
    proc = _run({"GOVBUS_URL": "memory://", "GOVBUS_DB": f"sqlite+aiosqlite:///{db}"})
    try:
        assert proc.stderr is not None
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "manager worker ready" in line or not line:
                break
        assert "manager worker ready" in lines[-1], lines
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        rest = proc.stderr.read()
        assert "stopping" in rest and "Traceback" not in rest
        assert db.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_a_bad_setting_is_one_line_naming_the_variable():
    proc = _run({"GOVBUS_DB": "mysql://nope"})
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.strip().count("\n") == 0 and "GOVBUS_DB" in err, err


def test_an_unreachable_broker_is_one_line_and_exit_1(tmp_path):
    proc = _run(
        {
            "GOVBUS_URL": "amqp://guest:guest@127.0.0.1:9/",
            "GOVBUS_DB": f"sqlite+aiosqlite:///{tmp_path}/m.db",
        }
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "Traceback" not in err and "manager_worker: error:" in err, err


def test_an_unreachable_store_is_one_line_naming_govbus_db():
    proc = _run(
        {"GOVBUS_URL": "memory://", "GOVBUS_DB": "postgresql+asyncpg://postgres@127.0.0.1:9/x"}
    )
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2, err
    assert err.strip().count("\n") == 0 and "GOVBUS_DB" in err, err
