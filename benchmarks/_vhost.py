"""A private vhost for the run, so benchmark traffic touches nobody else's queues or log."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit


def _rabbitmqctl(*args: str) -> bool:
    ctl = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
    try:
        done = subprocess.run([ctl, "-q", *args], capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def private_vhost(url: str) -> Iterator[str]:
    """Yield `url` on a fresh vhost (deleted afterwards), or `url` itself when this machine
    cannot create one (a remote broker): names are unique per run either way."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    vhost = f"govbus-bench-{uuid.uuid4().hex[:8]}"
    if host not in ("127.0.0.1", "localhost", "::1") or not _rabbitmqctl("add_vhost", vhost):
        yield url
        return
    try:
        user = parts.username or "guest"
        _rabbitmqctl("set_permissions", "-p", vhost, user, ".*", ".*", ".*")
        yield urlunsplit(parts._replace(path="/" + quote(vhost, safe="")))
    finally:
        _rabbitmqctl("delete_vhost", vhost)
