"""Staging the manager's events in the outbox, and the ids of derived events."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncSession

from bus.ids import derived_id
from bus.store import add_to_outbox
from manager_worker.config import SOURCE
from schemas import Event

# Fixed, so every manager (and every replay) derives the same id from the same cause.
NAMESPACE = uuid.UUID("6f1c7b4e-2a0d-5c55-9e3a-8b1f0d6c4a21")


def caused_id(cause_id: str, subject: str, event_type: str) -> str:
    """The id of an event caused by another event: `derived_id` of `cause/subject/type`.

    `subject` is the resource id (or, for drift, the host), so one cause touching many
    resources gives each of them its own, reproducible id. (One part, joined by `/`: the
    manager's ids predate `bus.ids` and must not change.)
    """
    return derived_id(NAMESPACE, f"{cause_id}/{subject}/{event_type}")


def new_id() -> str:
    """A fresh id, for events caused by a request rather than by another event."""
    return str(uuid.uuid4())


def stage(session: AsyncSession, event: Event, *, event_id: str, time: datetime) -> str:
    """Add `event` to the outbox in `session`'s transaction; the relay publishes it after commit."""
    add_to_outbox(
        session,
        event_id=event_id,
        event_type=event.TYPE,
        source=SOURCE,
        time=time,
        body=to_json(event),
    )
    return event_id
