"""`govbus up`, `govbus discovery`, `govbus manager`, `govbus edge`: the processes."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig
from quart import Quart

from bus.client import Bus
from bus.errors import BusError, ConfigError
from bus.settings import Settings, load_settings
from govbus._preflight import check_store
from govbus.cli import app, fail
from http_edge import SCOPES, create_app, mint_token
from http_edge.auth import new_secret
from http_edge.stream import close_streams
from http_edge.tls import check_tls

log = logging.getLogger(__name__)

UrlOption = Annotated[str | None, typer.Option("--url", help="the bus (default: GOVBUS_URL)")]
DbOption = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL of the store (default: GOVBUS_DB)")
]
HttpOption = Annotated[
    str | None, typer.Option("--http", help="edge listen address HOST:PORT (default: GOVBUS_HTTP)")
]
TOKEN_FILE = "govbus.token"


class Worker(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _hypercorn(settings: Settings) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [settings.http]
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    config.graceful_timeout = 3.0
    # With a certificate every bind serves TLS: HTTPS only, no plain-HTTP port beside it.
    config.certfile = settings.tls_cert
    config.keyfile = settings.tls_key
    return config


def check_edge(settings: Settings) -> None:
    """What can be wrong with the edge's own settings, found before anything starts:
    the listen address (`GOVBUS_HTTP`) and the HTTPS files (`GOVBUS_TLS_*`)."""
    if settings.tls_cert is not None and settings.tls_key is not None:
        check_tls(settings.tls_cert, settings.tls_key)
    check_listen(settings.http)


def edge_address(settings: Settings) -> str:
    """The edge's base URL as a client writes it."""
    scheme = "https" if settings.tls_cert else "http"
    return f"{scheme}://{settings.http}"


def check_listen(http: str) -> None:
    """Raise `ConfigError` naming GOVBUS_HTTP if nothing can listen on `http` (in use, ...)."""
    host, _, port = http.rpartition(":")
    try:
        with socket.create_server((host.strip("[]"), int(port))):
            pass
    except OSError as exc:
        raise ConfigError(f"GOVBUS_HTTP: cannot listen on {http}: {exc.strerror}") from None


async def serve_edge(app_: Quart, settings: Settings, stop: asyncio.Event) -> None:
    """Serve the edge with hypercorn on this loop until `stop` is set (HTTPS when
    `GOVBUS_TLS_CERT`/`GOVBUS_TLS_KEY` are set: run `check_edge` first)."""
    http = settings.http

    async def shutdown_trigger() -> None:
        await stop.wait()
        close_streams(app_)  # open event streams end now instead of holding the shutdown up

    try:
        await hypercorn_serve(app_, _hypercorn(settings), shutdown_trigger=shutdown_trigger)
    except OSError as exc:  # lost the race for the port since check_listen
        raise ConfigError(f"GOVBUS_HTTP: cannot listen on {http}: {exc.strerror}") from None


@contextlib.asynccontextmanager
async def running_worker(
    package: str, url: str, db_url: str, **kwargs: Any
) -> AsyncIterator[Worker]:
    """A worker of `package` on its own connection (named by the package's `SOURCE`)."""
    module = importlib.import_module(package)
    bus = Bus(url, source=getattr(module, "SOURCE", f"govbus/{package}"))
    await bus.start()
    try:
        factory = getattr(module, "bootstrap", None)
        if factory is None or inspect.ismodule(factory):
            factory = importlib.import_module(f"{package}.bootstrap").bootstrap
        built = factory(bus=bus, db_url=db_url, **kwargs)
        worker: Worker = await built if inspect.isawaitable(built) else built
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()
    finally:
        await bus.close()


@app.command()
def up(
    url: UrlOption = None,
    db: DbOption = None,
    http: HttpOption = None,
) -> None:
    """Discovery, manager and edge in one process (embedded bus by default). Ctrl-C stops."""
    settings = _settings(url=url, db=db, http=http)
    try:
        check_edge(settings)
        check_store(settings.db)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    minted = None
    own_key = settings.auth_secret or settings.auth_public_key
    if settings.auth == "required" and not own_key and not settings.auth_jwks_url:
        settings = settings.model_copy(update={"auth_secret": new_secret()})
    if settings.auth == "required" and settings.auth_secret:
        minted = mint_token(SCOPES, ttl_s=30 * 86_400, secret=settings.auth_secret, subject="admin")
        try:
            _write_private(Path(TOKEN_FILE), minted)
        except OSError as exc:
            raise fail(
                f"cannot write the admin token ./{TOKEN_FILE} in {Path.cwd()}: {exc.strerror} "
                "(govbus up writes it where it runs: run it in a writable directory)"
            ) from None
    try:
        asyncio.run(_up(settings, minted))
    except BusError as exc:
        raise fail(str(exc)) from None


async def _up(settings: Settings, token: str | None) -> None:
    stop = _stop_on_signals()
    url = settings.bus_url(embedded=True)
    async with contextlib.AsyncExitStack() as stack:
        workers = [
            await stack.enter_async_context(running_worker(package, url, settings.db))
            for package in ("discovery_worker", "manager_worker")
        ]
        edge_bus = Bus(url, source="govbus/edge")
        await edge_bus.start()
        stack.push_async_callback(edge_bus.close)
        observed = [bus for w in workers if isinstance(bus := getattr(w, "bus", None), Bus)]
        edge_app = create_app(bus=edge_bus, settings=settings, observe=observed)
        server = asyncio.create_task(serve_edge(edge_app, settings, stop))
        await asyncio.sleep(0)
        typer.echo(
            f"govbus up: edge on {edge_address(settings)}  bus {_redact(url)}  store {settings.db}"
        )
        if token is not None:
            typer.echo(f"admin token (also in ./{TOKEN_FILE}, valid 30 days):\n{token}")
        elif settings.auth == "required" and settings.auth_public_key:
            typer.echo("tokens: RS256 (GOVBUS_AUTH_PUBLIC_KEY): govbus token --private-key KEY.pem")
        elif settings.auth == "required":
            typer.echo(f"tokens: from the OpenID Connect provider {settings.auth_issuer}")
        else:
            typer.echo("auth is disabled (GOVBUS_AUTH=disabled): no token needed")
        typer.echo("Ctrl-C stops.", err=True)
        await server
    typer.echo("govbus up: stopped", err=True)


def _write_private(path: Path, text: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")


def _redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


@app.command()
def edge(url: UrlOption = None, http: HttpOption = None) -> None:
    """The HTTP edge alone, against a shared bus (RabbitMQ)."""
    settings = _settings(url=url, http=http)
    try:
        check_edge(settings)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    bus_url = settings.bus_url(embedded=False)
    bus = Bus(bus_url, source="govbus/edge")
    try:
        edge_app = create_app(bus=bus, settings=settings)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None

    async def run() -> None:
        stop = _stop_on_signals()
        # Connected before serving: an unreachable broker is one line here, not a lifespan
        # failure inside the server.
        async with bus:
            typer.echo(f"govbus edge: {edge_address(settings)}  bus {_redact(bus_url)}")
            await serve_edge(edge_app, settings, stop)

    try:
        asyncio.run(run())
    except BusError as exc:
        raise fail(str(exc)) from None


def _component(package: str, settings: Settings) -> None:
    try:
        check_store(settings.db)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    module = importlib.import_module(f"{package}.__main__")
    try:
        asyncio.run(module.serve(settings))
    except BusError as exc:
        raise fail(str(exc)) from None


@app.command()
def discovery(
    url: UrlOption = None,
    db: DbOption = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="its own event queue, for a second replica that keeps a full registry "
            "(default: govbus.discovery)"
        ),
    ] = None,
) -> None:
    """The discovery worker alone (service registry), against a shared bus."""
    settings = _settings(url=url, db=db)
    if queue is None:
        _component("discovery_worker", settings)
        return
    try:
        check_store(settings.db)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    from discovery_worker.config import DiscoveryConfig

    async def run() -> None:
        stop = _stop_on_signals()
        url_ = settings.bus_url(embedded=False)
        async with running_worker(
            "discovery_worker", url_, settings.db, config=DiscoveryConfig(queue=queue)
        ):
            typer.echo(f"govbus discovery: queue {queue}  bus {_redact(url_)}", err=True)
            await stop.wait()

    try:
        asyncio.run(run())
    except BusError as exc:
        raise fail(str(exc)) from None


@app.command()
def manager(url: UrlOption = None, db: DbOption = None) -> None:
    """The manager worker alone (resource inventory), against a shared bus."""
    _component("manager_worker", _settings(url=url, db=db))
