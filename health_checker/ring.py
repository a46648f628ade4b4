"""Which live checker runs a check: rendezvous (highest random weight) hashing.

Every checker computes the same owner from the same members, with no coordination; when a
member joins or leaves, only the checks it wins or held move (consistent hashing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(member: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{member}\x00{key}".encode(), digest_size=8).digest())


def owner(key: str, members: Iterable[str]) -> str | None:
    """The member that runs `key` (None when there is no member)."""
    return max(members, key=lambda m: (_weight(m, key), m), default=None)
