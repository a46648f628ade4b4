"""`govbus record` and `govbus replay`: event logs from the bus, and back into fresh workers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import IO, Annotated

import orjson
import typer

from bus.client import Bus
from bus.errors import BusError
from bus.eventlog import LogEvent, LogFormatError, LogWriter, read_log
from bus.message import Delivery, format_time, parse_moment
from bus.replay import Outcome
from bus.settings import load_settings
from bus.topology import EVENTS, LOG
from govbus.cli import app, fail
from govbus.replay import replay_log

UrlOption = Annotated[str | None, typer.Option("--url", help="the bus (default: GOVBUS_URL)")]

_PROGRESS_MIN_BYTES = 1 << 20  # a progress bar for logs of a megabyte or more


@app.command()
def record(
    out: Annotated[Path, typer.Option("--out", "-o", help="the log file to write (appended)")],
    pattern: Annotated[
        str, typer.Argument(help="event types to record, e.g. 'registry.*' (default: all)")
    ] = "#",
    from_start: Annotated[
        bool,
        typer.Option(
            "--from-start", help=f"read the RabbitMQ stream {LOG} from its first event, then follow"
        ),
    ] = False,
    count: Annotated[int, typer.Option(help="stop after this many events (0: never)", min=0)] = 0,
    url: UrlOption = None,
) -> None:
    """Record what crosses govbus.events as JSON Lines until SIGTERM or Ctrl-C."""
    settings = load_settings(url=url)
    bus_url = settings.bus_url(embedded=False)
    if from_start and not bus_url.startswith("amqp"):
        raise fail(f"--from-start reads the RabbitMQ stream {LOG}: it needs an amqp:// URL", 2)
    try:
        file = open(out, "ab")  # noqa: SIM115 (closed below, after the loop stops)
    except OSError as exc:
        raise fail(f"cannot write {out}: {exc.strerror}", 2) from None
    try:
        written = asyncio.run(
            record_events(bus_url, file, pattern=pattern, from_start=from_start, count=count)
        )
    except BusError as exc:
        raise fail(str(exc)) from None
    finally:
        file.close()
    typer.echo(f"recorded {written} event(s) to {out}", err=True)


async def record_events(
    url: str,
    file: IO[bytes],
    *,
    pattern: str = "#",
    from_start: bool = False,
    count: int = 0,
    stop: asyncio.Event | None = None,
    started: Callable[[], None] | None = None,
    handle_signals: bool = True,
) -> int:
    """Write every event matching `pattern` to `file`, one flushed line each, until `stop` is
    set, `count` events were written, or SIGTERM/SIGINT (with `handle_signals`); returns how
    many were written.

    Live (default): a tap on `govbus.events` with `pattern`. `from_start`: a tap on the
    `govbus.log` stream from offset `first`. Either way only what came through `govbus.events`
    is written (see `bus.tap`).
    """
    done = stop or asyncio.Event()
    recorder = _Recorder(LogWriter(file), count, done)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, done.set)
    try:
        async with Bus(url, source="govbus-record") as bus:
            tap = await bus.tap(
                [pattern],
                recorder.on_delivery,
                prefix="govbus.record",
                prefetch=512,
                stream=LOG if from_start else None,
            )
            where = f"stream {LOG} from its first event" if from_start else f"{pattern} on {EVENTS}"
            typer.echo(f"recording {where}", err=True)
            if started is not None:
                started()
            await done.wait()
            await tap.close()
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    return recorder.writer.written


class _Recorder:
    """Writes each tapped event as a flushed log line; sets `done` after `count` lines."""

    def __init__(self, writer: LogWriter, count: int, done: asyncio.Event) -> None:
        self.writer = writer
        self.count = count
        self.done = done

    def on_delivery(self, delivery: Delivery) -> None:
        if self.done.is_set():
            return
        try:
            self.writer.write(LogEvent.from_delivery(delivery))
        except ValueError as exc:
            typer.echo(f"govbus: skipped an undecodable message: {exc}", err=True)
        if self.count and self.writer.written >= self.count:
            self.done.set()


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="a log written by `govbus record` (JSON Lines)")],
    verify: Annotated[
        bool,
        typer.Option(help="compare the events the workers regenerate with the recorded ones"),
    ] = False,
    seed: Annotated[int, typer.Option(help="seed of the workers' random choices")] = 0,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="TIME",
            help="the state at this moment (RFC 3339, e.g. 2026-01-01T12:00:00Z)",
        ),
    ] = None,
) -> None:
    """Feed a log to fresh workers on a virtual clock; print their final state as JSON.

    The output is the same, byte for byte, for the same log. With --until, the state at that
    moment: the events up to it, and the expiries due by then. With --verify the differences
    between recorded and regenerated worker events go to stderr, and the exit code is 1.
    """
    try:
        moment = parse_moment(until) if until is not None else None
    except ValueError as exc:
        raise fail(f"--until: {exc}", 2) from None
    if not file.is_file():
        raise fail(f"no such log file: {file}", 2)
    size = file.stat().st_size
    try:
        if moment is not None:
            with open(file, "rb") as stream:
                first = next(read_log(stream), None)
            if first is not None and moment < first.time:
                # as GET /v1/history answers 404 for a moment before the oldest kept
                raise fail(
                    f"--until: {format_time(moment)} is before the log's first event "
                    f"({format_time(first.time)})",
                    2,
                )
        with open(file, "rb") as stream:
            outcome = _replay_with_progress(stream, size, verify=verify, seed=seed, until=moment)
    except LogFormatError as exc:
        raise fail(f"malformed log: {exc}") from None
    except BusError as exc:
        raise fail(str(exc)) from None
    sys.stdout.buffer.write(orjson.dumps(outcome.state, option=orjson.OPT_SORT_KEYS) + b"\n")
    sys.stdout.flush()
    problems = [str(d) for d in outcome.differences] + [
        f"command failed: {e}" for e in outcome.command_errors
    ]
    for problem in problems:
        typer.echo(f"verify: {problem}", err=True)
    if verify:
        stats = outcome.stats
        typer.echo(
            f"verify: {outcome.events} event(s): {stats.fed} fed, {stats.skipped} regenerated "
            f"or re-run, {len(outcome.differences)} difference(s)",
            err=True,
        )
        if problems:
            raise typer.Exit(1)


def _replay_with_progress(
    stream: IO[bytes], size: int, *, verify: bool, seed: int, until: datetime | None
) -> Outcome:
    if size < _PROGRESS_MIN_BYTES:
        return asyncio.run(replay_log(read_log(stream), verify=verify, seed=seed, until=until))
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}% {task.fields[events]} events"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=size, events=0)

        def progress(events: int) -> None:
            bar.update(task, completed=stream.tell(), events=events)

        return asyncio.run(
            replay_log(read_log(stream), verify=verify, seed=seed, progress=progress, until=until)
        )
