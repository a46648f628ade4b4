"""Serving the edge with uvicorn (httptools) on this event loop: `EdgeServer` starts and stops
like a worker, so a process runs it as it runs the workers (`bus.process.running`).

The process owns its signals (`bus.process.run_until_signal`), so uvicorn installs none; the
edge binds its socket itself, so a taken port is a one-line `ConfigError`, not uvicorn's
log line and `sys.exit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from quart import Quart

from bus.errors import BusError, ConfigError
from bus.settings import Settings
from http_edge.auth import Authenticator
from http_edge.stream import close_streams
from http_edge.tls import check_tls

log = logging.getLogger(__name__)

__all__ = [
    "EdgeServer",
    "bind",
    "check_edge",
    "check_listen",
    "edge_address",
    "raise_fd_limit",
    "serving_config",
]

GRACEFUL_S = 3
"""How long in-flight requests may take to finish once the edge is asked to stop."""


def check_edge(settings: Settings) -> None:
    """What can be wrong with the edge's own settings, found before anything starts: the
    listen address (`GOVBUS_HTTP`), the HTTPS files (`GOVBUS_TLS_*`) and, when tokens are
    required, the keys they are checked with (`GOVBUS_AUTH_*`)."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        check_tls(settings.tls_cert, settings.tls_key)
    check_listen(settings.http)
    if settings.auth == "required":
        Authenticator.from_settings(settings)


def bind(http: str) -> socket.socket:
    """A listening socket on `http` (`HOST:PORT`, `[::1]:PORT` for IPv6); `ConfigError` naming
    GOVBUS_HTTP if nothing can listen there (in use, no such address, ...)."""
    host, _, port = http.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, int(port)), family=family, backlog=2048)
    except OSError as exc:  # create_server's strerror repeats the address: say it once
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"GOVBUS_HTTP: cannot listen on {http}: {reason}") from None


def check_listen(http: str) -> None:
    """Raise `ConfigError` naming GOVBUS_HTTP if nothing can listen on `http` (in use, ...)."""
    bind(http).close()


def raise_fd_limit() -> int:
    """Let the process hold as many connections as the system allows it: the soft limit on
    open files goes up to the hard one (Linux's soft default, 1,024, would refuse the
    thousands of blocking watchers an edge holds). Returns the limit now in force."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:  # a sandbox may refuse; the soft limit stays
            log.debug("cannot raise the open-files limit: %s", exc)
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return soft


def edge_address(settings: Settings) -> str:
    """The edge's base URL as a client writes it."""
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{settings.http}"


def serving_config(app: Any, *, cert: str | None = None, key: str | None = None) -> uvicorn.Config:
    """How the edge is served (the benchmark's bare baseline is served the same way): uvicorn
    with httptools, the ASGI lifespan on (Quart's `before_serving`/`after_serving`), no access
    log, uvicorn's loggers left to the process's logging. With a certificate the socket serves
    TLS only: HTTPS, no plain-HTTP port beside it."""
    return uvicorn.Config(
        app,
        http="httptools",
        lifespan="on",
        log_config=None,
        access_log=False,
        proxy_headers=False,  # the client's address is the peer's, as it always was
        ssl_certfile=cert,
        ssl_keyfile=key,
        timeout_graceful_shutdown=GRACEFUL_S,
    )


def _startup_failures(app: Any, failures: list[str]) -> Any:
    """`app`, noting why its lifespan startup failed (uvicorn only logs it, then exits)."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def noting(message: Any) -> None:
            if message["type"] == "lifespan.startup.failed":
                failures.append(message.get("message") or "see the log above")
            await send(message)

        await app(scope, receive, noting)

    return asgi


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: SIGTERM and SIGINT belong to the process
    (`bus.process.run_until_signal`), which stops the edge through `EdgeServer.stop`."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EdgeServer:
    """`app` served on `settings.http` (HTTPS when `GOVBUS_TLS_CERT`/`GOVBUS_TLS_KEY` are set:
    run `check_edge` first) from `start()` until `stop()`.

    `stop()` ends the open event streams (they would hold the shutdown up), lets in-flight
    requests finish (up to `GRACEFUL_S`) and raises what made the server fail, e.g. a
    `ConfigError` when another process took the port since `check_listen`, a `BusError` when
    the app's startup (`before_serving`: the bus's RPC) failed. `on_exit` is
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
        await asyncio.sleep(0)  # let the server begin

    async def stop(self) -> None:
        self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            await task

    async def _serve(self) -> None:
        raise_fd_limit()  # a connection per blocking watcher
        sock = bind(self.settings.http)  # lost the race for the port since check_listen?
        failures: list[str] = []
        app = _startup_failures(self.app, failures)
        config = serving_config(app, cert=self.settings.tls_cert, key=self.settings.tls_key)
        server = _Server(config)

        async def shutdown_trigger() -> None:
            await self._stopping.wait()
            try:
                close_streams(self.app)
            finally:
                server.should_exit = True

        trigger = asyncio.get_running_loop().create_task(shutdown_trigger(), name="edge:stop")
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's way of saying the app's startup failed
            reason = "; ".join(failures) or "its startup failed (see the log above)"
            raise BusError(f"the edge did not start: {reason}") from None
        finally:
            trigger.cancel()
            sock.close()
