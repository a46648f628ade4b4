"""A whole log through a replay: `replay_log(events, participants)`, and the order it feeds
events in (`commands_in_time`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bus.eventlog import LogEvent
from bus.replay.engine import Replay, ReplayStats
from bus.replay.participants import Participants
from bus.replay.verify import Difference, Verifier

__all__ = ["Outcome", "commands_in_time", "feed_until", "replay_log"]


@dataclass(slots=True)
class Outcome:
    """What `replay_log` returns: the final state, the verification and the counters."""

    state: dict[str, Any]
    differences: list[Difference]
    command_errors: list[str]
    stats: ReplayStats
    events: int


async def replay_log(
    events: Iterable[LogEvent],
    participants: Participants,
    *,
    verify: bool = False,
    seed: int = 0,
    db_url: str | None = None,
    progress: Callable[[int], None] | None = None,
    until: datetime | None = None,
) -> Outcome:
    """Replay a whole log into fresh `participants` and return their state at its last event,
    or at `until`.

    `events` is read once, as it streams (`read_log`); `progress(n)` is called now and then
    with the number of events read so far. With `verify`, the events the participants
    regenerate are compared with the recorded ones (`Participants.verifier`).

    `until`: the state at that moment. Feeding stops at the first event to feed that happened
    later; the clock then moves to `until`, so every timer due by then (an expiry, say) fires
    and none due later does, and the state's `at` is `until`. With `verify`, the recorded
    worker events up to `until` are still read for 5 s of log time past it (a worker
    event reaches the log a little after its cause).
    """
    verifier = participants.verifier() if verify else None
    async with Replay(capture=False) as replay:
        await replay.attach(participants, seed=seed, db_url=db_url)
        if verifier is not None:
            replay.on_produced = verifier.regenerated
        ordered = commands_in_time(
            events, is_command=participants.is_command, regenerated=participants.sources
        )
        count = await feed_until(replay, ordered, until=until, verifier=verifier, progress=progress)
        state = await replay.state()
        differences = verifier.finish() if verifier is not None else []
        if progress is not None:
            progress(count)
        errors = list(participants.command_errors)
        return Outcome(state, differences, errors, replay.stats, count)


async def feed_until(
    replay: Replay,
    events: Iterable[LogEvent],
    *,
    until: datetime | None = None,
    verifier: Verifier | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Feed `events` (in the order to feed them: see `commands_in_time`) to `replay`, up to
    `until` if given, then move its clock to the last event, or to `until` (see `replay_log`);
    returns how many were fed. `replay` must have its participants attached."""
    participants = replay.participants
    sources = participants.sources if participants is not None else frozenset()
    count = 0
    past = False  # `until` passed: only reading recorded worker events for `verify`
    for event in events:
        if until is not None and event.time > until:
            if verifier is None or event.time > until + _VERIFY_WINDOW:
                break
            past = True
            continue
        if past:
            regenerated = event.source in sources and not (
                participants is not None and participants.is_command(event)
            )
            if verifier is not None and regenerated:
                verifier.recorded(event)
            continue
        count += 1
        await replay.feed(event)
        if verifier is not None:
            verifier.recorded(event)
        if progress is not None and count % 4096 == 0:
            progress(count)
    if until is not None:
        replay.note_time(until)
    if replay.last_time is not None:
        await replay.advance_to(replay.last_time)
        await replay.settle()
    return count


_VERIFY_WINDOW = timedelta(seconds=5)


def commands_in_time(
    events: Iterable[LogEvent],
    *,
    is_command: Callable[[LogEvent], bool],
    regenerated: Collection[str],
    window_s: float = 5.0,
    limit: int = 100_000,
) -> Iterator[LogEvent]:
    """The log's events, with each recorded command event (`is_command`) moved back to its
    own time.

    A command's events reach the log after its transaction commits (through an outbox relay):
    events published a little later by others can be recorded first. The command ran at its
    event's `time`, so replay runs it there: before the first event of the last `window_s`
    seconds (at most `limit` events held) whose time is later. Every other event keeps the
    order it crossed the bus in, which is the order the workers consumed it. Events from the
    `regenerated` sources (not commands) do not count: they are not fed, and their times are
    their causes', out of arrival order.
    """
    held: list[LogEvent] = []
    for event in events:
        if is_command(event):
            at = next(
                (
                    i
                    for i, e in enumerate(held)
                    if e.time > event.time and (e.source not in regenerated or is_command(e))
                ),
                len(held),
            )
            held.insert(at, event)
        else:
            held.append(event)
        horizon = event.time.timestamp() - window_s
        released = 0
        while released < len(held) and (
            len(held) - released > limit or held[released].time.timestamp() < horizon
        ):
            released += 1
        if released:
            yield from held[:released]
            del held[:released]
    yield from held
