"""Private vhosts on the shared local RabbitMQ (the `vhost_url` fixture in tests/conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator

# Deletions still running: each `rabbitmqctl` boots an Erlang VM (about half a second), so a
# vhost is deleted while the next test runs, and the session waits for them all at its end.
_deleting: list[subprocess.Popen[bytes]] = []


@contextlib.contextmanager
def private_vhost(amqp_url: str, name: str) -> Iterator[str]:
    """A fresh vhost on the shared RabbitMQ (guest may use it), deleted afterwards.

    RPC methods are routing keys on `govbus.rpc`: two workers serving the same method on one
    vhost would both answer, so tests that run real workers on RabbitMQ take a vhost of their own.
    """
    vhost = f"govbus-test-{name}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, timeout=60)
    try:
        subprocess.run(
            ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
            check=True,
            timeout=60,
        )
        yield amqp_url.rstrip("/") + "/" + vhost
    finally:
        _deleting[:] = [p for p in _deleting if p.poll() is None]
        _deleting.append(
            subprocess.Popen(
                ["rabbitmqctl", "-q", "delete_vhost", vhost],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )


def wait_for_deletions(timeout: float = 60.0) -> None:
    """Wait until every vhost deletion started by `private_vhost` has finished."""
    while _deleting:
        process = _deleting.pop()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
