"""Private vhosts on the shared local RabbitMQ (the `vhost_url` fixture in tests/conftest.py).

Each `rabbitmqctl` call boots an Erlang VM (about half a second), and a vhost takes three
(create, grant guest, delete). So the next test's vhost is created in a background thread while
the current test runs, and a used vhost is deleted in the background while the next one runs;
`finish()` at the end of the session deletes the spare and waits for every deletion. Every test
still gets a vhost nobody has used before.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from uuid import uuid4


def _create() -> str:
    vhost = f"govbus-test-{uuid4().hex[:10]}"
    subprocess.run(["rabbitmqctl", "-q", "add_vhost", vhost], check=True, timeout=60)
    subprocess.run(
        ["rabbitmqctl", "-q", "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"],
        check=True,
        timeout=60,
    )
    return vhost


class _Vhosts:
    def __init__(self) -> None:
        self.creator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="govbus-test-vhost")
        self.spare: Future[str] | None = None
        self.deleting: list[subprocess.Popen[bytes]] = []

    def take(self) -> str:
        spare, self.spare = self.spare, None
        vhost = spare.result(timeout=120) if spare is not None else _create()
        self.spare = self.creator.submit(_create)  # the next test's, made while this one runs
        return vhost

    def delete(self, vhost: str) -> None:
        self.deleting = [p for p in self.deleting if p.poll() is None]
        self.deleting.append(
            subprocess.Popen(
                ["rabbitmqctl", "-q", "delete_vhost", vhost],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def finish(self, timeout: float) -> None:
        spare, self.spare = self.spare, None
        if spare is not None:
            with contextlib.suppress(Exception):  # it failed to be made: nothing to delete
                self.delete(spare.result(timeout=timeout))
        while self.deleting:
            process = self.deleting.pop()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


_VHOSTS = _Vhosts()


@contextlib.contextmanager
def private_vhost(amqp_url: str) -> Iterator[str]:
    """A fresh vhost on the shared RabbitMQ (guest may use it), deleted afterwards.

    RPC methods are routing keys on `govbus.rpc`: two workers serving the same method on one
    vhost would both answer, so tests that run real workers on RabbitMQ take a vhost of their own.
    """
    vhost = _VHOSTS.take()
    try:
        yield amqp_url.rstrip("/") + "/" + vhost
    finally:
        _VHOSTS.delete(vhost)


def finish(timeout: float = 60.0) -> None:
    """Delete the spare vhost and wait until every deletion has finished."""
    _VHOSTS.finish(timeout)
