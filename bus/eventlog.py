"""Event logs: JSON Lines of CloudEvents 1.0 events in structured form, one event a line.

A line is what `bus.message.structured` makes of an event::

    {"specversion":"1.0","id":"…","type":"registry.heartbeat","source":"web",
     "time":"2026-01-01T00:00:00.000000Z","datacontenttype":"application/json","data":{…}}

Reading streams (`read_log` holds one line at a time, whatever the size of the log); a line that
is not such an event raises `LogFormatError` naming the file and the line number. Writing
(`LogWriter`) flushes every line, so a recorder killed at any moment leaves a valid log.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from bus.errors import DecodeError
from bus.message import (
    JSON,
    SPECVERSION,
    Delivery,
    EventMeta,
    Message,
    event_message,
    event_meta,
    format_time,
    parse_time,
    structured,
)

__all__ = [
    "LogEvent",
    "LogFormatError",
    "LogWriter",
    "dump_line",
    "parse_line",
    "read_log",
    "write_log",
]


class LogFormatError(DecodeError):
    """A line of an event log is not a CloudEvents 1.0 event; `line` is its 1-based number."""

    def __init__(self, where: str, line: int, reason: str) -> None:
        super().__init__(f"{where}:{line}: {reason}")
        self.where = where
        self.line = line
        self.reason = reason


class LogEvent(NamedTuple):
    """One event of a log: its CloudEvents attributes and its JSON data.

    A named tuple rather than a frozen dataclass: replay makes one per line, and a frozen
    dataclass costs four times as much to build."""

    id: str
    type: str
    source: str
    time: datetime
    data: Any
    traceparent: str | None = None

    @property
    def meta(self) -> EventMeta:
        return EventMeta(
            id=self.id,
            type=self.type,
            source=self.source,
            time=self.time,
            traceparent=self.traceparent,
        )

    def to_json(self) -> dict[str, Any]:
        """The structured CloudEvents form (one log line, before encoding)."""
        return structured(self.meta, self.data)

    def to_message(self) -> Message:
        """The binary-mode AMQP message this event travels as."""
        return event_message(
            event_type=self.type,
            body=orjson.dumps(self.data),
            event_id=self.id,
            source=self.source,
            time=self.time,
            traceparent=self.traceparent,
        )

    @classmethod
    def from_delivery(cls, delivery: Delivery) -> LogEvent:
        """Read an event off the bus; raises ValueError if it is not a CloudEvent with JSON."""
        meta = event_meta(delivery)
        try:
            data = orjson.loads(delivery.message.body) if delivery.message.body else None
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"event {meta.id}: the body is not JSON: {exc}") from exc
        return cls(meta.id, meta.type, meta.source, meta.time, data, meta.traceparent)


def dump_line(event: LogEvent) -> bytes:
    """One log line, newline included."""
    return orjson.dumps(event.to_json()) + b"\n"


def _bad_text(obj: dict[str, Any]) -> str:
    for key in ("id", "type", "source", "time"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            return f"{key!r} must be a non-empty string"
    return "a required attribute is missing"  # pragma: no cover


def parse_line(line: bytes | str) -> LogEvent:
    """Parse one log line; raises ValueError saying what is wrong with it."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if type(obj) is not dict:
        raise ValueError("not a JSON object")
    get = obj.get
    if get("specversion") != SPECVERSION:
        raise ValueError(f"'specversion' must be {SPECVERSION!r}, got {get('specversion')!r}")
    content_type = get("datacontenttype", JSON)
    if content_type != JSON:
        raise ValueError(f"'datacontenttype' must be {JSON!r}, got {content_type!r}")
    event_id, event_type, source, raw_time = get("id"), get("type"), get("source"), get("time")
    # One test for the common case; the slow path says which attribute is wrong.
    if not (
        type(event_id) is str
        and type(event_type) is str
        and type(source) is str
        and type(raw_time) is str
        and event_id
        and event_type
        and source
        and raw_time
    ):
        raise ValueError(_bad_text(obj))
    try:
        time = parse_time(raw_time)
    except ValueError:
        raise ValueError(f"'time' is not an RFC 3339 time: {raw_time!r}") from None
    traceparent = get("traceparent")
    return LogEvent(
        event_id,
        event_type,
        source,
        time,
        get("data"),
        traceparent if type(traceparent) is str else None,
    )


def read_log(source: str | Path | IO[bytes], *, name: str | None = None) -> Iterator[LogEvent]:
    """Yield the events of a log in order, one line in memory at a time.

    `source` is a path or a binary file. Blank lines are skipped; any other line that is not
    an event raises `LogFormatError` with its line number.
    """
    if isinstance(source, str | Path):
        with open(source, "rb") as file:
            yield from _read(file, name or str(source))
    else:
        yield from _read(source, name or getattr(source, "name", None) or "<log>")


def _read(file: IO[bytes], where: str) -> Iterator[LogEvent]:
    number = 0
    while True:
        lines = file.readlines(_CHUNK)  # a chunk at a time: cheaper than a call per line
        if not lines:
            return
        for line in lines:
            number += 1
            if line.isspace():
                continue
            try:
                event = parse_line(line)
            except ValueError as exc:
                raise LogFormatError(str(where), number, str(exc)) from None
            yield event


_CHUNK = 1 << 16


class LogWriter:
    """Appends events to a binary file, one line each, flushed at once."""

    def __init__(self, file: IO[bytes], *, flush: bool = True) -> None:
        self.file = file
        self.flush = flush
        self.written = 0

    def write(self, event: LogEvent) -> None:
        self.file.write(dump_line(event))
        if self.flush:
            self.file.flush()
        self.written += 1


def write_log(path: str | Path, events: Iterable[LogEvent]) -> int:
    """Write a whole log (tests and tools); returns the number of events."""
    with open(path, "wb") as file:
        writer = LogWriter(file, flush=False)
        for event in events:
            writer.write(event)
        return writer.written


def time_text(moment: datetime) -> str:
    """The time form every log line (and the replay's `at`) uses."""
    return format_time(moment)
