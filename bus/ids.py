"""Deterministic ids for derived events.

An event a worker derives from another event (or from its clock) gets an id computed from
what caused it, so a replay of the same log regenerates the very same events, and a worker
restored after a crash re-derives what it lost under the ids it would have used.
"""

from __future__ import annotations

import uuid


def derived_id(namespace: uuid.UUID, *parts: object) -> str:
    """uuid5 in `namespace` of `parts` joined by `:` (each as `str`).

    Each worker has its own namespace and its own choice of parts; both are part of its
    wire behaviour: changing either changes every id it derives.
    """
    return str(uuid.uuid5(namespace, ":".join(str(part) for part in parts)))
