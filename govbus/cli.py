"""The `govbus` command. Each group of commands lives in its own module and registers here.

Every command prints a one-line error and exits non-zero on bad input or an unreachable broker;
no traceback reaches the user for their own mistakes.
"""

from __future__ import annotations

import logging
import sys

import typer

from bus.errors import BusError

app = typer.Typer(
    name="govbus",
    help="Microservice governance over an event bus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print `govbus: error: message` on stderr; raise the returned Exit."""
    typer.echo(f"govbus: error: {message}", err=True)
    return typer.Exit(code)


def _register() -> None:
    # Each module adds its commands to `app` when imported; they import `app` from here, so
    # they load once this module has.
    from govbus import events, log, query, workers  # noqa: F401


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # aiormq logs every failed connect at error level; our own one-line error says it better.
    logging.getLogger("aiormq").setLevel(logging.CRITICAL)
    _register()
    try:
        app()
    except BusError as exc:
        typer.echo(f"govbus: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
