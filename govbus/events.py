"""`govbus publish` and `govbus tail`: events from and to the terminal."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Annotated, Any

import orjson
import typer
from pydantic import ValidationError

from bus.client import Bus
from bus.errors import BusError, Unroutable
from bus.message import Delivery, event_meta, structured
from bus.settings import load_settings
from bus.topology import EVENTS
from bus.validation import describe_validation
from govbus.cli import app, fail
from schemas import EVENT_TYPES

UrlOption = Annotated[str | None, typer.Option("--url", help="the bus (default: GOVBUS_URL)")]


@app.command()
def publish(
    event_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="event type, e.g. registry.register")
    ],
    payload: Annotated[str, typer.Argument(metavar="JSON", help="the event payload as JSON")],
    url: UrlOption = None,
    source: Annotated[str, typer.Option(help="the publisher named in ce-source")] = "govbus-cli",
) -> None:
    """Validate an event, publish it with a confirm, and print its id."""
    model = EVENT_TYPES.get(event_type)
    if model is None:
        known = ", ".join(sorted(EVENT_TYPES))
        raise fail(f"unknown event type {event_type!r}; known types: {known}", 2)
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise fail(f"JSON is not valid: {exc}", 2) from None
    if not isinstance(data, dict):
        raise fail("JSON must be an object of the event's fields", 2)
    try:
        event = model.model_validate(data)
    except ValidationError as exc:
        raise fail(f"invalid {event_type}: {describe_validation(exc)}", 2) from None
    settings = load_settings(url=url)

    async def run() -> str:
        async with Bus(settings.bus_url(embedded=False), source=source) as bus:
            return await bus.publish(event)

    try:
        event_id = asyncio.run(run())
    except Unroutable:
        raise fail(f"no queue subscribes to {event_type}: the event was not stored") from None
    except BusError as exc:
        raise fail(str(exc)) from None
    typer.echo(event_id)


@app.command()
def tail(
    pattern: Annotated[str, typer.Argument(help="routing pattern, e.g. 'registry.*' or '#'")] = "#",
    url: UrlOption = None,
    count: Annotated[int, typer.Option(help="stop after this many events (0: never)", min=0)] = 0,
) -> None:
    """Print events as they pass, one CloudEvents JSON object a line."""
    settings = load_settings(url=url)
    try:
        asyncio.run(_tail(settings.bus_url(embedded=False), pattern, count))
    except BusError as exc:
        raise fail(str(exc)) from None


async def _tail(url: str, pattern: str, count: int) -> None:
    done = asyncio.Event()
    seen = 0

    def on_delivery(delivery: Delivery) -> None:
        nonlocal seen
        try:
            meta = event_meta(delivery)
            data: Any = orjson.loads(delivery.message.body)
            line = orjson.dumps(structured(meta, data))
        except (ValueError, orjson.JSONDecodeError) as exc:
            line = orjson.dumps(
                {"error": f"undecodable message: {exc}", "routing_key": delivery.routing_key}
            )
        sys.stdout.buffer.write(line + b"\n")
        sys.stdout.flush()
        seen += 1
        if count and seen >= count:
            done.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    async with Bus(url, source="govbus-tail") as bus:
        tap = await bus.tap([pattern], on_delivery, prefix="govbus.tail")
        typer.echo(f"tailing {pattern} on {EVENTS}", err=True)
        await done.wait()
        await tap.close()
