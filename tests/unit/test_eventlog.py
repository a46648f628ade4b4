"""The event log format: JSON Lines of structured CloudEvents, streamed, errors by line."""

from __future__ import annotations

import io
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from bus.eventlog import LogEvent, LogFormatError, LogWriter, dump_line, read_log, write_log

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LOGS = Path(__file__).parent.parent / "logs"


def event(i: int = 0, **kw) -> LogEvent:
    fields = {
        "id": f"e-{i}",
        "type": "registry.heartbeat",
        "source": "web",
        "time": T0 + timedelta(seconds=i),
        "data": {"service": "web", "instance_id": "web-1"},
    }
    return LogEvent(**{**fields, **kw})


def test_a_line_is_a_structured_cloudevent():
    line = dump_line(event(traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    obj = orjson.loads(line)
    assert obj == {
        "specversion": "1.0",
        "id": "e-0",
        "type": "registry.heartbeat",
        "source": "web",
        "time": "2026-01-01T00:00:00.000000Z",
        "datacontenttype": "application/json",
        "data": {"service": "web", "instance_id": "web-1"},
        "traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    }


def test_write_then_read_round_trips(tmp_path):
    events = [event(i) for i in range(5)]
    assert write_log(tmp_path / "a.jsonl", events) == 5
    assert list(read_log(tmp_path / "a.jsonl")) == events


def test_writer_flushes_every_line():
    class Counting(io.BytesIO):
        flushes = 0

        def flush(self) -> None:
            self.flushes += 1
            super().flush()

    file = Counting()
    writer = LogWriter(file)
    writer.write(event(0))
    writer.write(event(1))
    assert file.flushes == 2
    assert file.getvalue().count(b"\n") == 2


def test_times_with_offsets_are_read_as_utc():
    line = dump_line(event()).replace(b"00:00:00.000000Z", b"02:00:00+02:00")
    (read,) = read_log(io.BytesIO(line))
    assert read.time == T0


_OK = b'"specversion": "1.0", "type": "x", "source": "s"'


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"specversion": "0.3"}', "specversion"),
        (b"{" + _OK + b', "time": "2026-01-01T00:00:00Z"}', "'id'"),
        (b"{" + _OK + b', "id": "1", "time": "yesterday"}', "RFC 3339"),
        (
            b"{"
            + _OK
            + b', "id": "1", "time": "2026-01-01T00:00:00Z", "datacontenttype": "text/xml"}',
            "datacontenttype",
        ),
    ],
)
def test_a_malformed_line_is_an_error_naming_its_line_number(bad, says):
    text = dump_line(event(0)) + b"\n" + dump_line(event(1)) + bad + b"\n" + dump_line(event(2))
    events = read_log(io.BytesIO(text), name="session.jsonl")
    assert next(events).id == "e-0"
    assert next(events).id == "e-1"  # the blank line 2 is skipped
    with pytest.raises(LogFormatError) as caught:
        next(events)
    assert caught.value.line == 4
    assert str(caught.value).startswith("session.jsonl:4: ")
    assert says in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_reading_streams_in_constant_memory(tmp_path):
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as file:
        writer = LogWriter(file, flush=False)
        for i in range(20_000):
            writer.write(event(i, id=f"e-{i}"))
    tracemalloc.start()
    try:
        count = 0
        for _ in read_log(path):
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 20_000
    assert peak < 2_000_000, f"peak {peak} bytes: the log was not streamed"


def test_the_example_logs_are_valid():
    names = sorted(p.name for p in LOGS.glob("*.jsonl"))
    assert {"registrations.jsonl", "expiry.jsonl", "drain.jsonl", "resources.jsonl"} <= set(names)
    for path in LOGS.glob("*.jsonl"):
        events = list(read_log(path))
        assert events
        assert [e.time for e in events] == sorted(e.time for e in events)
