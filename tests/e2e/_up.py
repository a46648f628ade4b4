"""What the process tests share: a free port, `govbus up` started, awaited and stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests._wait import wait_until

ROOT = Path(__file__).resolve().parents[2]
GOVBUS = str(Path(sys.executable).with_name("govbus"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_up(cwd: Path, port: int, **env: str) -> subprocess.Popen[str]:
    """`govbus up` in `cwd`, its edge on `port`; no DNS interface unless `GOVBUS_DNS` is given
    (its default, 127.0.0.1:8600, would be one port for every test)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    env = {"GOVBUS_DNS": "off", **env}
    return subprocess.Popen(
        [GOVBUS, "up", "--http", f"127.0.0.1:{port}"],
        cwd=cwd,
        env={**clean, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 20.0) -> None:
    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"govbus up exited {proc.returncode}: {proc.stderr.read()}")  # type: ignore[union-attr]
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout=timeout, what="govbus up to be ready")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str, str]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=15)
    return proc.returncode, out, err
