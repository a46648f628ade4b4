"""Verification: the events workers published live (recorded in the log) against the ones
replay regenerated, paired and compared field by field."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from bus.eventlog import LogEvent
from bus.message import format_time, parse_time

__all__ = ["Difference", "Verifier", "by_id"]


@dataclass(frozen=True, slots=True)
class Difference:
    """A recorded worker event that replay did not regenerate identically."""

    kind: str  # "missing" (recorded, not regenerated), "extra" (the reverse), "changed"
    key: str
    type: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind} {self.type} {self.key}: {self.detail}"


def by_id(event: LogEvent) -> str:
    """Pair events by id: what a worker derives from other events has a deterministic id."""
    return event.id


class Verifier:
    """Pairs the recorded and the regenerated events of `sources` by `key` (default: the event
    id) and lists the differences in type and data.

    `restore(data)` turns a regenerated event's data back into the recorded run's terms before
    the comparison (e.g. ids the replay minted anew, mapped to the recorded ones). Memory
    holds only the not-yet-paired events.
    """

    def __init__(
        self,
        sources: Iterable[str],
        *,
        key: Callable[[LogEvent], str] = by_id,
        restore: Callable[[Any], Any] | None = None,
    ) -> None:
        self.sources = frozenset(sources)
        self.key = key
        self.restore = restore
        self._recorded: dict[str, LogEvent] = {}
        self._regenerated: dict[str, LogEvent] = {}
        self.differences: list[Difference] = []
        self.paired = 0

    def recorded(self, event: LogEvent) -> None:
        if event.source in self.sources:
            self._pair(self.key(event), recorded=event)

    def regenerated(self, event: LogEvent) -> None:
        if event.source in self.sources:
            self._pair(self.key(event), regenerated=event)

    def _pair(
        self, key: str, *, recorded: LogEvent | None = None, regenerated: LogEvent | None = None
    ) -> None:
        if recorded is not None:
            regenerated = self._regenerated.pop(key, None)
            if regenerated is None:
                self._recorded[key] = recorded
                return
        else:
            recorded = self._recorded.pop(key, None)
            if recorded is None:
                assert regenerated is not None
                self._regenerated[key] = regenerated
                return
        assert regenerated is not None
        self.paired += 1
        detail = self._compare(recorded, regenerated)
        if detail:
            self.differences.append(Difference("changed", key, recorded.type, detail))

    def _compare(self, recorded: LogEvent, regenerated: LogEvent) -> str:
        if recorded.type != regenerated.type:
            return f"type: recorded {recorded.type}, regenerated {regenerated.type}"
        data = regenerated.data if self.restore is None else self.restore(regenerated.data)
        found = list(_diff(recorded.data, data, "data"))
        if not found:
            return ""
        shown = "; ".join(f"{path}: recorded {a!r}, regenerated {b!r}" for path, a, b in found[:5])
        more = f" (and {len(found) - 5} more)" if len(found) > 5 else ""
        return shown + more

    def finish(self) -> list[Difference]:
        """Close the books: whatever is still unpaired is missing or extra."""
        for key, event in self._recorded.items():
            self.differences.append(
                Difference("missing", key, event.type, f"recorded at {format_time(event.time)}")
            )
        for key, event in self._regenerated.items():
            self.differences.append(
                Difference("extra", key, event.type, f"regenerated at {format_time(event.time)}")
            )
        self._recorded.clear()
        self._regenerated.clear()
        return self.differences


def _diff(a: Any, b: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                yield f"{path}.{k}", a.get(k, "<absent>"), b.get(k, "<absent>")
            else:
                yield from _diff(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _diff(x, y, f"{path}[{i}]")
    elif a != b and not _same_instant(a, b):
        yield path, a, b


def _same_instant(a: Any, b: Any) -> bool:
    """Two spellings of one time (`…05Z` and `…05.000000Z`) are not a difference."""
    if not (isinstance(a, str) and isinstance(b, str) and a[:4].isdigit() and "T" in a):
        return False
    try:
        return parse_time(a) == parse_time(b)
    except ValueError:
        return False
