"""`govbus up`, `govbus discovery`, `govbus manager`, `govbus checker`, `govbus edge`: the
processes.

`up` runs every component of `govbus.components.COMPONENTS` in one process (the embedded bus
by default); each other command runs one of them against a shared bus. All of them run until
SIGTERM or Ctrl-C (`bus.process.run_until_signal`), then stop gracefully and exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from bus.client import Bus
from bus.errors import BusError, ConfigError
from bus.process import run_process
from bus.settings import Settings, load_settings
from govbus.cli import app, fail
from govbus.components import COMPONENTS, running_component
from http_edge import SCOPES, mint_token
from http_edge.auth import new_secret
from http_edge.server import edge_address

UrlOption = Annotated[str | None, typer.Option("--url", help="the bus (default: GOVBUS_URL)")]
DbOption = Annotated[
    str | None, typer.Option("--db", help="SQLAlchemy URL of the store (default: GOVBUS_DB)")
]
HttpOption = Annotated[
    str | None, typer.Option("--http", help="edge listen address HOST:PORT (default: GOVBUS_HTTP)")
]
TOKEN_FILE = "govbus.token"


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None


def _check(names: list[str], settings: Settings) -> None:
    """Each component's own checks, before anything starts: a bad setting is one line."""
    try:
        for name in names:
            COMPONENTS[name].check(settings)
    except ConfigError as exc:
        raise fail(str(exc)) from None


@app.command()
def up(
    url: UrlOption = None,
    db: DbOption = None,
    http: HttpOption = None,
) -> None:
    """Discovery, manager and edge in one process (embedded bus by default). Ctrl-C stops."""
    settings = _settings(url=url, db=db, http=http)
    minted = None
    own_key = settings.auth_secret or settings.auth_public_key
    if settings.auth == "required" and not own_key and not settings.auth_jwks_url:
        settings = settings.model_copy(update={"auth_secret": new_secret()})
    # `govbus up` serves DNS by default (127.0.0.1:8600): said once here, for every component.
    settings = settings.model_copy(update={"dns": settings.dns_address(embedded=True) or "off"})
    _check(list(COMPONENTS), settings)
    if settings.auth == "required" and settings.auth_secret:
        minted = mint_token(SCOPES, ttl_s=30 * 86_400, secret=settings.auth_secret, subject="admin")
        try:
            _write_private(Path(TOKEN_FILE), minted)
        except OSError as exc:
            raise fail(
                f"cannot write the admin token ./{TOKEN_FILE} in {Path.cwd()}: {exc.strerror} "
                "(govbus up writes it where it runs: run it in a writable directory)"
            ) from None

    async def main(stop: asyncio.Event) -> None:
        await _up(settings, minted, stop)

    try:
        run_process(main)
    except BusError as exc:
        raise fail(str(exc)) from None


async def _up(settings: Settings, token: str | None, stop: asyncio.Event) -> None:
    url = settings.bus_url(embedded=True)
    async with contextlib.AsyncExitStack() as stack:
        peers: list[Bus] = []  # the edge's /metrics counts the workers' connections too
        for component in COMPONENTS.values():
            _, launch = await stack.enter_async_context(
                running_component(component, url, settings, peers=peers, stop=stop)
            )
            peers.append(launch.bus)
        typer.echo(
            f"govbus up: edge on {edge_address(settings)}  bus {_redact(url)}  store {settings.db}"
        )
        typer.echo(f"dashboard: {edge_address(settings)}/ui/")
        dns = settings.dns_address(embedded=True)
        if dns is not None:
            host, _, port = dns.rpartition(":")
            example = f"dig @{host.strip('[]')} -p {port} <service>.service.{settings.dns_domain}"
            typer.echo(f"DNS on {dns} (UDP and TCP): {example} SRV")
        if token is not None:
            typer.echo(f"admin token (also in ./{TOKEN_FILE}, valid 30 days):\n{token}")
        elif settings.auth == "required" and settings.auth_public_key:
            typer.echo("tokens: RS256 (GOVBUS_AUTH_PUBLIC_KEY): govbus token --private-key KEY.pem")
        elif settings.auth == "required":
            typer.echo(f"tokens: from the OpenID Connect provider {settings.auth_issuer}")
        else:
            typer.echo("auth is disabled (GOVBUS_AUTH=disabled): no token needed")
        typer.echo("Ctrl-C stops.", err=True)
        await stop.wait()
    typer.echo("govbus up: stopped", err=True)


def _write_private(path: Path, text: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text + "\n")


def _redact(url: str) -> str:
    """The bus URL without passwords (every node of a cluster's list)."""
    return ",".join(_redact_node(node) for node in url.split(","))


def _redact_node(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if not at:
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


def _alone(name: str, settings: Settings, *, queue: str | None = None) -> None:
    """Run the component `name` as this process, against a shared bus (RabbitMQ)."""
    _check([name], settings)
    component = COMPONENTS[name]
    url = settings.bus_url(embedded=False)
    if url.startswith("memory://"):
        # The embedded bus lives inside one process: a component alone on it would wait
        # forever for peers it can never reach.
        raise fail(
            f"govbus {name} alone needs a shared bus: GOVBUS_URL=amqp://... (the embedded "
            "bus, memory://, lives inside one process: `govbus up` runs every component on it)",
            2,
        )

    async def main(stop: asyncio.Event) -> None:
        running = running_component(component, url, settings, queue=queue, stop=stop)
        async with running as (_, launch):
            described = component.describe(launch)
            typer.echo(f"govbus {name}: {described}  bus {_redact(url)}", err=True)
            await stop.wait()

    try:
        run_process(main)
    except BusError as exc:
        raise fail(str(exc)) from None


@app.command()
def edge(url: UrlOption = None, http: HttpOption = None) -> None:
    """The HTTP edge alone, against a shared bus (RabbitMQ)."""
    _alone("edge", _settings(url=url, http=http))


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
    _alone("discovery", _settings(url=url, db=db), queue=queue)


@app.command()
def checker(url: UrlOption = None) -> None:
    """A health checker alone (runs the registry's HTTP and TCP checks), against a shared bus."""
    _alone("checker", _settings(url=url))


@app.command()
def manager(url: UrlOption = None, db: DbOption = None) -> None:
    """The manager worker alone (resource inventory), against a shared bus."""
    _alone("manager", _settings(url=url, db=db))
