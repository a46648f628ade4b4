"""`govbus services`, `govbus resources` (tables, over the bus) and `govbus token`."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from bus.client import Bus
from bus.errors import BusError, ConfigError
from bus.settings import load_settings
from bus.validation import describe_validation
from govbus.cli import app, fail
from http_edge.auth import DEFAULT_TTL_S, SCOPES, mint_token
from schemas.rpc import (
    ResourcePage,
    ResourcesRequest,
    ServiceRequest,
    ServicesRequest,
    ServicesView,
    ServiceView,
)

UrlOption = Annotated[str | None, typer.Option("--url", help="the bus (default: GOVBUS_URL)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the answer as JSON")]


def _ask(url: str | None, method: str, params: BaseModel, reply: type[BaseModel]) -> Any:
    try:
        settings = load_settings(url=url)
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    bus_url = settings.bus_url(embedded=False)
    if bus_url.startswith("memory://"):
        raise fail(
            "the embedded bus (memory://) lives inside `govbus up`; query it over HTTP "
            "(curl http://127.0.0.1:8080/v1/services) or set GOVBUS_URL=amqp://...",
            2,
        )

    async def run() -> Any:
        async with Bus(bus_url, source="govbus-cli") as bus:
            return await bus.rpc.call(method, params, reply=reply, timeout=5.0)

    try:
        return asyncio.run(run())
    except BusError as exc:
        raise fail(str(exc)) from None


@app.command()
def services(
    name: Annotated[str | None, typer.Argument(help="one service: list its instances")] = None,
    passing: Annotated[bool, typer.Option(help="only passing instances")] = False,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The service registry as a table (asks the discovery worker)."""
    console = Console()
    if name is None:
        view: ServicesView = _ask(url, "discovery.services", ServicesRequest(), ServicesView)
        if as_json:
            typer.echo(view.model_dump_json())
            return
        protection = view.protection
        table = Table(title=f"services (index {view.index})")
        for column in ("service", "instances", "passing", "warning", "critical", "draining"):
            table.add_column(column)
        for s in view.services:
            table.add_row(
                s.service,
                *(str(n) for n in (s.instances, s.passing, s.warning, s.critical, s.draining)),
            )
    else:
        try:
            params = ServiceRequest(name=name, passing_only=passing)
        except ValidationError as exc:
            raise fail(f"bad service name {name!r}: {describe_validation(exc)}", 2) from None
        one: ServiceView = _ask(url, "discovery.service", params, ServiceView)
        if as_json:
            typer.echo(one.model_dump_json())
            return
        protection = one.protection
        table = Table(title=f"{one.service} (index {one.index})")
        for column in ("instance", "address", "status", "weight", "tags", "last heartbeat"):
            table.add_column(column)
        for i in one.instances:
            beat = i.last_heartbeat.isoformat(timespec="seconds") if i.last_heartbeat else "-"
            table.add_row(
                i.instance_id,
                f"{i.address}:{i.port}",
                i.status,
                str(i.weight),
                ",".join(i.tags),
                beat,
            )
    if protection:
        console.print("[yellow]expiry protection is on: expired instances are kept[/yellow]")
    console.print(table)


@app.command()
def resources(
    *,
    kind: Annotated[str | None, typer.Option(help="vm, volume or network")] = None,
    status: Annotated[str | None, typer.Option(help="pending, active, unreachable, ...")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="page size")] = 100,
    cursor: Annotated[str | None, typer.Option(help="the next page, as the last one said")] = None,
    url: UrlOption = None,
    as_json: JsonOption = False,
) -> None:
    """The resource inventory as a table (asks the manager worker)."""
    try:
        params = ResourcesRequest.model_validate(
            {"kind": kind, "status": status, "limit": limit, "cursor": cursor}
        )
    except ValidationError as exc:
        raise fail(f"bad filter: {describe_validation(exc)}", 2) from None
    page: ResourcePage = _ask(url, "manager.resources", params, ResourcePage)
    if as_json:
        typer.echo(page.model_dump_json())
        return
    table = Table(title="resources")
    for column in ("name", "kind", "status", "host", "version", "spec"):
        table.add_column(column)
    for r in page.items:
        spec = r.model_dump(
            exclude={"id", "kind", "name", "status", "host", "version", "created_at", "updated_at"}
        )
        text = " ".join(f"{k}={v}" for k, v in spec.items() if v not in (None, {}))
        table.add_row(r.name, r.kind, r.status, r.host or "-", str(r.version), text)
    Console().print(table)
    if page.next:
        typer.echo(f"more: --cursor {page.next}", err=True)


@app.command()
def token(
    scope: Annotated[
        list[str],
        typer.Option("--scope", help=f"a scope to grant (repeat): {', '.join(SCOPES)}"),
    ],
    ttl: Annotated[int, typer.Option(min=1, help="seconds the token stays valid")] = DEFAULT_TTL_S,
    private_key: Annotated[
        Path | None,
        typer.Option(help="RSA private key (PEM) to sign with RS256 instead of the secret"),
    ] = None,
    subject: Annotated[str, typer.Option(help="the token's subject (sub)")] = "govbus-cli",
) -> None:
    """Mint an edge token (HS256 with GOVBUS_AUTH_SECRET, or RS256) and print it alone."""
    try:
        key = private_key.read_bytes() if private_key is not None else None
    except OSError as exc:
        raise fail(f"--private-key: cannot read {private_key}: {exc.strerror}", 2) from None
    try:
        printed = mint_token(
            scope,
            ttl_s=ttl,
            secret=os.environ.get("GOVBUS_AUTH_SECRET"),
            private_key=key,
            subject=subject,
        )
    except ConfigError as exc:
        raise fail(str(exc), 2) from None
    typer.echo(printed)
