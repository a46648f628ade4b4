"""Times as integer microseconds since the epoch: exact, small, and cheap to compare."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
NEVER = 2**62
"""A due time that never comes (an instance parked while expiry protection is on)."""


def to_us(moment: datetime) -> int:
    return (moment - EPOCH) // _US


def from_us(us: int) -> datetime:
    return EPOCH + timedelta(microseconds=us)


def seconds_us(seconds: float) -> int:
    return round(seconds * 1_000_000)
