"""The recorder skips what it already wrote when a stream is read from `first` again (after
a reconnection), and filters the stream by pattern."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

from bus.cli.log import _Recorder
from bus.eventlog import LogWriter, read_log
from bus.message import Delivery, event_message


class Fake(Delivery):
    acked = 0

    async def ack(self) -> None:
        Fake.acked += 1

    async def nack(self, *, requeue: bool) -> None:
        raise AssertionError("the recorder never nacks")


def delivery(offset: int, event_type: str = "registry.heartbeat") -> Fake:
    message = event_message(
        event_type=event_type,
        body=b'{"n": %d}' % offset,
        event_id=f"e-{offset}",
        source="web",
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    message.headers["x-stream-offset"] = offset
    return Fake(message, exchange="", routing_key=event_type, redelivered=False, delivery_count=0)


async def test_a_reread_stream_is_not_written_twice_and_is_filtered():
    file = io.BytesIO()
    recorder = _Recorder(LogWriter(file), "registry.*", 0, asyncio.Event())
    offsets = [0, 1, 2, 0, 1, 2, 3]  # a reconnection after offset 2 starts from `first` again
    for offset in offsets:
        recorder.on_delivery(delivery(offset))
    recorder.on_delivery(delivery(4, "resource.observed"))  # not matched by the pattern
    await asyncio.gather(*recorder.pending)
    file.seek(0)
    assert [e.id for e in read_log(file)] == ["e-0", "e-1", "e-2", "e-3"]
    assert Fake.acked == len(offsets) + 1  # everything is acked, written or not


async def test_the_count_stops_the_recorder():
    done = asyncio.Event()
    recorder = _Recorder(LogWriter(io.BytesIO()), "#", 2, done)
    recorder.on_delivery(delivery(0))
    assert not done.is_set()
    recorder.on_delivery(delivery(1))
    assert done.is_set()
    recorder.on_delivery(delivery(2))
    await asyncio.gather(*recorder.pending)
    assert recorder.writer.written == 2
