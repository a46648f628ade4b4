"""History: the state of an application at any moment of its recorded event log.

- `store`: `HistoryStore`, the log (by offset) and the snapshots, in a SQLAlchemy store;
- `service`: `History`, which keeps the log from a bus, follows it with the application's
  participants, snapshots them and answers `at(moment)` by replaying a bounded tail.

See docs/replay.md ("History").
"""

from bus.history.service import History, HistoryParticipants, TooEarly
from bus.history.store import HistoryStore, Snapshot

__all__ = ["History", "HistoryParticipants", "HistoryStore", "Snapshot", "TooEarly"]
