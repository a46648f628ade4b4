"""Serving the edge with hypercorn on this event loop: `EdgeServer` starts and stops like a
worker, so a process runs it as it runs the workers (`bus.process.running`)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from bus.errors import ConfigError
from bus.settings import Settings
from http_edge.auth import Authenticator
from http_edge.stream import close_streams
from http_edge.tls import check_tls

log = logging.getLogger(__name__)

__all__ = ["EdgeServer", "check_edge", "check_listen", "edge_address"]


def check_edge(settings: Settings) -> None:
    """What can be wrong with the edge's own settings, found before anything starts: the
    listen address (`GOVBUS_HTTP`), the HTTPS files (`GOVBUS_TLS_*`) and, when tokens are
    required, the keys they are checked with (`GOVBUS_AUTH_*`)."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        check_tls(settings.tls_cert, settings.tls_key)
    check_listen(settings.http)
    if settings.auth == "required":
        Authenticator.from_settings(settings)


def check_listen(http: str) -> None:
    """Raise `ConfigError` naming GOVBUS_HTTP if nothing can listen on `http` (in use, ...)."""
    host, _, port = http.rpartition(":")
    try:
        with socket.create_server((host.strip("[]"), int(port))):
            pass
    except OSError as exc:
        raise ConfigError(f"GOVBUS_HTTP: cannot listen on {http}: {exc.strerror}") from None


def edge_address(settings: Settings) -> str:
    """The edge's base URL as a client writes it."""
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{settings.http}"


def _hypercorn(settings: Settings) -> Config:
    config = Config()
    config.bind = [settings.http]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 3.0
    # With a certificate every bind serves TLS: HTTPS only, no plain-HTTP port beside it.
    config.certfile = settings.tls_cert
    config.keyfile = settings.tls_key
    return config


class EdgeServer:
    """`app` served on `settings.http` (HTTPS when `GOVBUS_TLS_CERT`/`GOVBUS_TLS_KEY` are set:
    run `check_edge` first) from `start()` until `stop()`.

    `stop()` ends the open event streams (they would hold the shutdown up), lets in-flight
    requests finish (hypercorn's graceful timeout) and raises what made the server fail, e.g.
    a `ConfigError` when another process took the port since `check_listen`. `on_exit` is
    called when the server ends, asked to or not: a process stops when its edge does.
    """

    def __init__(
        self, app: Quart, settings: Settings, *, on_exit: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.settings = settings
        self._on_exit = on_exit
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def ready(self) -> bool:
        """Serving (or about to): started, not stopped, not failed."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.get_running_loop().create_task(self._serve(), name="edge:serve")
        if self._on_exit is not None:
            on_exit = self._on_exit
            self._task.add_done_callback(lambda _: on_exit())
        await asyncio.sleep(0)  # let hypercorn begin binding

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _serve(self) -> None:
        async def shutdown_trigger() -> None:
            await self._stopping.wait()
            close_streams(self.app)

        http = self.settings.http
        try:
            await serve(self.app, _hypercorn(self.settings), shutdown_trigger=shutdown_trigger)
        except OSError as exc:  # lost the race for the port since check_listen
            raise ConfigError(f"GOVBUS_HTTP: cannot listen on {http}: {exc.strerror}") from None
