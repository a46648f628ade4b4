"""Replay: an event log fed to participants on a private embedded bus with a virtual clock.

- `engine`: `Replay`, one step at a time (clock, delivery, quiescence);
- `participants`: what an application gives it (`Participants`, worker factories on a `Stage`);
- `verify`: `Verifier`, regenerated events against recorded ones;
- `pipeline`: `replay_log`, a whole log, with commands run at their own time; `feed_until`,
  the part of a log up to a moment.

The library knows no application: an application takes part by giving its `Participants`.
"""

from bus.replay.engine import Replay, ReplayError, ReplayStats
from bus.replay.participants import Participants, Stage, WorkerFactory
from bus.replay.pipeline import Outcome, commands_in_time, feed_until, replay_log
from bus.replay.verify import Difference, Verifier, by_id

__all__ = [
    "Difference",
    "Outcome",
    "Participants",
    "Replay",
    "ReplayError",
    "ReplayStats",
    "Stage",
    "Verifier",
    "WorkerFactory",
    "by_id",
    "commands_in_time",
    "feed_until",
    "replay_log",
]
