"""`History`: the state of an application at any recorded moment, from its event log.

A history keeps the log (`HistoryStore`: every event, by offset) and follows it with the
application's participants on a replay of its own (the *follower*). Every `snapshot_every`
events it takes a snapshot of the follower: the participants' databases and memo, with the
offset and time they stand at. `at(moment)` then starts fresh participants from the latest
snapshot taken at or before `moment` and replays only the log after it, up to `moment`
(`bus.replay.feed_until`, as `govbus replay --until` does): a query replays at most
`snapshot_every` events (plus what the follower has not reached yet, which it catches up first).

Where the log comes from (`start(bus, stream=...)`): on RabbitMQ the `govbus.log` stream, from
the offset after the last one kept (the offset is the event's `seq`); on the embedded bus a tap
on `govbus.events`, numbered here. Either way what arrives is appended in batches, never one
write per event.

Replays watch every task of their event loop to know when a step is over (see
`bus.replay._quiet`), so the history runs them on an event loop of its own, in a thread: the
process's loop (the edge's, a worker's) only hands events over (a deque) and awaits answers.
The follower and the queries take turns on that loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import shutil
import sqlite3
import tempfile
import threading
import zipfile
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from bus.client import Bus
from bus.errors import NotFound
from bus.eventlog import LogEvent
from bus.history.store import HistoryStore, Snapshot
from bus.message import Delivery, format_time
from bus.replay import Participants, Replay, commands_in_time, feed_until
from bus.tap import Tap

log = logging.getLogger(__name__)

__all__ = ["History", "HistoryParticipants", "TooEarly"]

T = TypeVar("T")

_BATCH = 2_000  # events written (one transaction) and fed per turn of the follower
_PAGE = 5_000  # events read from the store at a time by a query
_BEHIND_WARNING = 100_000  # events waiting to be kept: a warning at every multiple


class TooEarly(NotFound):
    """A moment before the oldest one the log holds (HTTP 404, naming that moment)."""

    def __init__(self, moment: datetime, oldest: datetime | None) -> None:
        self.oldest = oldest
        if oldest is None:
            text = f"no history at {format_time(moment)}: nothing has been recorded yet"
        else:
            text = (
                f"no history at {format_time(moment)}: the oldest recorded moment is "
                f"{format_time(oldest)}"
            )
        super().__init__(text, details={"oldest": format_time(oldest) if oldest else None})


class HistoryParticipants(Participants, Protocol):
    """Participants a history can snapshot: what they keep besides their databases."""

    async def checkpoint(self) -> dict[str, Any]:
        """Write everything kept in memory to the stores; return the rest (JSON-able)."""
        ...

    def recall(self, memo: Mapping[str, Any]) -> None:
        """Take back what `checkpoint` returned (the workers have restored their stores)."""
        ...


@dataclass(slots=True)
class _Run:
    """Participants on a replay, standing after the event `seq`."""

    replay: Replay
    participants: HistoryParticipants
    directory: Path
    seq: int
    fed_since_snapshot: int = 0

    async def close(self) -> None:
        await self.replay.close()
        shutil.rmtree(self.directory, ignore_errors=True)


class History:
    """The recorded log of a bus, and the state of `participants` at any moment of it."""

    def __init__(
        self,
        url: str,
        participants: Callable[[], HistoryParticipants],
        *,
        snapshot_every: int = 10_000,
        seed: int = 0,
    ) -> None:
        if snapshot_every < 1:
            raise ValueError("snapshot_every must be at least 1")
        self.url = url
        self.participants = participants
        self.snapshot_every = snapshot_every
        self.seed = seed
        self.store = HistoryStore(url)
        self.ingested = 0
        self._pending: deque[tuple[int | None, LogEvent]] = deque()
        self._signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake: asyncio.Event | None = None
        self._lock: asyncio.Lock | None = None
        self._follower: _Run | None = None
        self._next_seq = 0
        self._pump: asyncio.Task[None] | None = None
        self._stopping = False
        self._tap: Tap | None = None
        self._scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else None

    # -- on the caller's loop ---------------------------------------------------------------

    async def start(self, bus: Bus | None = None, *, stream: str | None = None) -> None:
        """Open the store, bring the follower to the last event kept, and (given `bus`)
        follow the bus: its `stream` (RabbitMQ's `govbus.log`) from the next offset, or
        without one a tap on every event."""
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        caller = asyncio.get_running_loop()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:
                caller.call_soon_threadsafe(_settle, ready, exc)
                loop.close()
                return
            caller.call_soon_threadsafe(_settle, ready, None)
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self._close())
                loop.close()

        self._thread = threading.Thread(target=run, name="govbus-history", daemon=True)
        self._thread.start()
        await ready
        if bus is not None:
            if stream is not None:
                offset: str | int = self._next_seq if self._next_seq > 0 else "first"
                self._tap = await bus.tap(
                    ["#"], self._on_stream, stream=stream, offset=offset, prefetch=1024
                )
            else:
                self._tap = await bus.tap(["#"], self._on_event, prefix="govbus.history")

    async def stop(self) -> None:
        if self._tap is not None:
            await self._tap.close()
            self._tap = None
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        # What was handed over is kept (the follower takes it up at the next start): a stop
        # must not wait for the follower to replay a backlog.
        with contextlib.suppress(Exception):
            await self._call(self._shutdown())
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join)
        self._loop = self._thread = None

    async def at(self, moment: datetime) -> dict[str, Any]:
        """The participants' state at `moment` (`Participants.state`, with `at` = moment).

        Raises `TooEarly` for a moment before the first event kept."""
        return await self._call(self._at(moment))

    async def oldest(self) -> datetime | None:
        """The oldest moment kept (None: nothing recorded yet)."""
        return await self._call(self.store.oldest())

    async def ingest(self, events: Iterable[LogEvent]) -> int:
        """Append `events` (numbered here) and let the follower take them; returns how many.
        For logs that did not come over a bus: tests, benchmarks, an import."""
        return await self._call(self._ingest(events))

    def offer(self, event: LogEvent, seq: int | None = None) -> None:
        """Hand one event over from any thread (the log's own `seq`, or numbered here)."""
        self._pending.append((seq, event))
        if len(self._pending) % _BEHIND_WARNING == 0:
            # Nothing bounds the hand-over (a tap cannot be paused): say when it grows.
            log.warning("history: %d events wait to be kept", len(self._pending))
        if not self._signalled and self._loop is not None and self._wake is not None:
            self._signalled = True
            self._loop.call_soon_threadsafe(self._wake.set)

    def _on_event(self, delivery: Delivery) -> None:
        try:
            self.offer(LogEvent.from_delivery(delivery))
        except ValueError as exc:
            log.warning("history: skipped an undecodable event: %s", exc)

    def _on_stream(self, delivery: Delivery) -> None:
        offset = delivery.message.headers.get("x-stream-offset")
        try:
            self.offer(
                LogEvent.from_delivery(delivery), int(offset) if offset is not None else None
            )
        except ValueError as exc:
            log.warning("history: skipped an undecodable event: %s", exc)

    async def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the history is not running: start() it first")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    # -- on the history's loop ----------------------------------------------------------------

    async def _open(self) -> None:
        self._stopping = False
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        await self.store.open()
        last = await self.store.last_seq()
        self._next_seq = 0 if last is None else last + 1
        self._follower = await self._restore(await self.store.snapshot())
        self._pump = asyncio.get_running_loop().create_task(self._pumping(), name="history")

    async def _close(self) -> None:
        await self._stop_pump()
        if self._follower is not None:
            await self._follower.close()
            self._follower = None
        await self.store.close()

    async def _pumping(self) -> None:
        assert self._wake is not None and self._lock is not None
        async with self._lock:  # first what the store holds past the snapshot (queries wait)
            await self._recovering(self._catch_up)
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            self._signalled = False
            if self._stopping:
                return
            async with self._lock:
                await self._recovering(self._process_pending)

    async def _recovering(self, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run a step of the follower; if it fails, log it and start the follower again from
        the last snapshot and the store (which has every event written so far)."""
        try:
            await step()
        except Exception as exc:
            log.error("history: the follower failed, restarting it from its snapshot: %s", exc)
            log.debug("history failure", exc_info=exc)
            if self._follower is not None:
                await self._follower.close()
            self._follower = await self._restore(await self.store.snapshot())
            await self._catch_up()

    async def _process_pending(self, *, follow: bool = True) -> None:
        """Write what was handed over, in batches, and feed it to the follower."""
        while self._pending:
            batch: list[tuple[int, LogEvent]] = []
            while self._pending and len(batch) < _BATCH:
                seq, event = self._pending.popleft()
                if seq is None:
                    seq = self._next_seq
                elif seq < self._next_seq:
                    continue  # a stream entry kept already
                self._next_seq = seq + 1
                batch.append((seq, event))
            if batch:
                await self.store.append(batch)
                self.ingested += len(batch)
                if follow:
                    await self._follow(batch)

    async def _shutdown(self) -> None:
        """Stop following, and keep what is still pending (the follower takes it up from the
        store at the next start). The follower is dropped mid-batch if need be: what it was
        fed is in the store already, and a snapshot is written whole or not at all."""
        await self._stop_pump()
        await self._process_pending(follow=False)

    async def _stop_pump(self) -> None:
        """Stop the follower between two events, never by cancelling it: a task cancelled
        inside an aiosqlite call leaves its connection to the garbage collector (a traceback
        at shutdown). `_stopping` ends its loops at the next event, so a stop waits for one
        event's replay at most, not for a backlog."""
        if self._pump is not None:
            self._stopping = True
            if self._wake is not None:
                self._wake.set()
            with contextlib.suppress(Exception):  # a failure is the follower's, logged there
                await self._pump
            self._pump = None

    async def _ingest(self, events: Iterable[LogEvent]) -> int:
        assert self._lock is not None
        count = 0
        async with self._lock:
            await self._process_pending()
            batch: list[tuple[int, LogEvent]] = []
            for event in events:
                batch.append((self._next_seq, event))
                self._next_seq += 1
                if len(batch) >= _BATCH:
                    count += await self._keep(batch)
                    batch = []
            count += await self._keep(batch)
        return count

    async def _keep(self, batch: list[tuple[int, LogEvent]]) -> int:
        if batch:
            await self.store.append(batch)
            self.ingested += len(batch)
            await self._follow(batch)
        return len(batch)

    async def _catch_up(self) -> None:
        """Feed the follower what the store holds past its snapshot."""
        run = self._follower
        assert run is not None
        while not self._stopping and (batch := await self.store.events_after(run.seq, _BATCH)):
            await self._follow(batch)

    async def _follow(self, batch: list[tuple[int, LogEvent]]) -> None:
        """Feed the follower, snapshotting it every `snapshot_every` events."""
        run = self._follower
        assert run is not None
        batch = [(seq, event) for seq, event in batch if seq > run.seq]
        participants = run.participants
        while batch:
            room = self.snapshot_every - run.fed_since_snapshot
            part, batch = batch[:room], batch[room:]
            ordered = commands_in_time(
                (event for _, event in part),
                is_command=participants.is_command,
                regenerated=participants.sources,
            )
            for event in ordered:
                if self._stopping:
                    return  # the follower is dropped: the store has every event
                await run.replay.feed(event)
            run.seq = part[-1][0]
            run.fed_since_snapshot += len(part)
            if run.fed_since_snapshot >= self.snapshot_every:
                await self._snapshot(run)

    async def _snapshot(self, run: _Run) -> None:
        memo = await run.participants.checkpoint()
        await run.replay.settle()
        moment = run.replay.last_time
        if moment is None:
            return
        files = await asyncio.to_thread(_pack, run.directory)
        await self.store.add_snapshot(Snapshot(run.seq, moment, memo, files))
        run.fed_since_snapshot = 0
        log.debug("history: snapshot at offset %d (%s)", run.seq, format_time(moment))

    async def _restore(self, snapshot: Snapshot | None) -> _Run:
        """Fresh participants, standing where `snapshot` left them (or at the beginning)."""
        directory = Path(tempfile.mkdtemp(prefix="govbus-history-", dir=self._scratch))
        replay = Replay(start=snapshot.time if snapshot else None, capture=False)
        try:
            await replay.start()
            if snapshot is not None:
                await asyncio.to_thread(_unpack, snapshot.files, directory)
            participants = self.participants()
            db_url = f"sqlite+aiosqlite:///{directory}/{{worker}}.db"
            await replay.attach(participants, seed=self.seed, db_url=db_url)
            if snapshot is not None:
                participants.recall(snapshot.memo)
                replay.note_time(snapshot.time)
        except BaseException:
            await replay.close()
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return _Run(replay, participants, directory, snapshot.seq if snapshot else -1)

    async def _at(self, moment: datetime) -> dict[str, Any]:
        assert self._lock is not None
        async with self._lock:
            # Everything handed over before the question is in the log, and the follower
            # (hence the latest snapshot) is at most `snapshot_every` events behind it.
            await self._process_pending()
            oldest = await self.store.oldest()
            if oldest is None or moment < oldest:
                raise TooEarly(moment, oldest)
            run = await self._restore(await self.store.snapshot(at_or_before=moment))
            try:
                tail: list[LogEvent] = []
                seq = run.seq
                while page := await self.store.events_after(seq, _PAGE):
                    tail.extend(event for _, event in page)
                    seq = page[-1][0]
                    if page[-1][1].time > moment:
                        break
                participants = run.participants
                ordered = commands_in_time(
                    tail, is_command=participants.is_command, regenerated=participants.sources
                )
                await feed_until(run.replay, ordered, until=moment)
                return await run.replay.state()
            finally:
                await run.close()


def _settle(future: asyncio.Future[None], exc: BaseException | None) -> None:
    if future.done():
        return
    if exc is None:
        future.set_result(None)
    else:
        future.set_exception(exc)


def _pack(directory: Path) -> bytes:
    """The SQLite databases in `directory`, each copied consistently (the backup API: a
    database in WAL mode is more than its main file), in one zip."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for path in sorted(directory.glob("*.db")):
            source = sqlite3.connect(path)
            copy = sqlite3.connect(":memory:")
            try:
                source.backup(copy)
                archive.writestr(path.name, copy.serialize())
            finally:
                copy.close()
                source.close()
    return out.getvalue()


def _unpack(files: bytes, directory: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(files)) as archive:
        for name in archive.namelist():
            (directory / Path(name).name).write_bytes(archive.read(name))
