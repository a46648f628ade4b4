"""A tap on a stream skips what it already passed on when the stream is read from `first`
again (after a reconnection), filters the stream by pattern, and passes on only what came
through `govbus.events`; the recorder stops after `count` events."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime

from bus.eventlog import LogWriter, read_log
from bus.message import Delivery, event_message
from bus.tap import Tap
from bus.topology import EVENTS, LOG
from bus.transport.memory import MemoryTransport
from govbus.log import _Recorder
from tests._wait import eventually


class Fake(Delivery):
    acked = 0

    async def ack(self) -> None:
        Fake.acked += 1

    async def nack(self, *, requeue: bool) -> None:
        raise AssertionError("a tap never nacks")


def delivery(offset: int, event_type: str = "registry.heartbeat", exchange: str = EVENTS) -> Fake:
    message = event_message(
        event_type=event_type,
        body=b'{"n": %d}' % offset,
        event_id=f"e-{offset}",
        source="web",
        time=datetime(2026, 1, 1, tzinfo=UTC),
    )
    message.headers["x-stream-offset"] = offset
    return Fake(
        message, exchange=exchange, routing_key=event_type, redelivered=False, delivery_count=0
    )


async def _settled(tap: Tap) -> None:
    await eventually(lambda: tap._acker is None, interval=0, what="the acker to finish")


async def test_a_reread_stream_is_not_passed_on_twice_and_is_filtered():
    file = io.BytesIO()
    recorder = _Recorder(LogWriter(file), 0, asyncio.Event())
    tap = Tap(MemoryTransport(), ["registry.*"], recorder.on_delivery, stream=LOG)
    Fake.acked = 0
    offsets = [0, 1, 2, 0, 1, 2, 3]  # a reconnection after offset 2 starts from `first` again
    for offset in offsets:
        tap._on_delivery(delivery(offset))
    tap._on_delivery(delivery(4, "resource.observed"))  # not matched by the pattern
    tap._on_delivery(delivery(5, exchange=""))  # written into the stream by name
    await _settled(tap)
    file.seek(0)
    assert [e.id for e in read_log(file)] == ["e-0", "e-1", "e-2", "e-3"]
    assert Fake.acked == len(offsets) + 2  # everything is acked, written or not
    assert tap.dropped == 1


async def test_the_count_stops_the_recorder():
    done = asyncio.Event()
    recorder = _Recorder(LogWriter(io.BytesIO()), 2, done)
    tap = Tap(MemoryTransport(), ["#"], recorder.on_delivery, stream=LOG)
    tap._on_delivery(delivery(0))
    assert not done.is_set()
    tap._on_delivery(delivery(1))
    assert done.is_set()
    tap._on_delivery(delivery(2))
    await _settled(tap)
    assert recorder.writer.written == 2
