"""What the discovery worker does with each event (its queries are in `queries`, both tables
in `routing`).

Handlers are plain functions: the typed event and its meta first, then `ctx`, the worker's
`Context` (registry, journal, balancer).

Durability per event type:

- `registry.register`, `.deregister`, `.drain`, `registry.check` and `resource.*` are
  acknowledged only once their effect, their inbox mark and the events they cause are
  committed (the handler waits for a flush), so nothing acknowledged is lost; a redelivered
  one finds its inbox mark (or, for resources, a version it already has) and has no second effect.
- `registry.heartbeat` (and each beat of `registry.heartbeats`) changes memory only, and is
  written behind by the periodic flush. Its effect is idempotent by construction: the
  heartbeat's own time (`meta.time`) becomes `last_heartbeat`, and a heartbeat not newer than
  the last one applied changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from bus.message import EventMeta
from schemas import (
    CheckResult,
    Deregister,
    Drain,
    Heartbeat,
    Heartbeats,
    Register,
    ResourceCreated,
    ResourceDeleted,
    ResourceStatusChanged,
    ResourceUpdated,
)

from ._time import to_us
from .context import Context


async def register(event: Register, meta: EventMeta, *, ctx: Context) -> None:
    await _durably(meta, ctx, lambda: ctx.registry.register(event, meta.id, to_us(meta.time)))


async def deregister(event: Deregister, meta: EventMeta, *, ctx: Context) -> None:
    await _durably(meta, ctx, lambda: ctx.registry.deregister(event, meta.id, to_us(meta.time)))


async def drain(event: Drain, meta: EventMeta, *, ctx: Context) -> None:
    await _durably(meta, ctx, lambda: ctx.registry.drain(event, meta.id, to_us(meta.time)))


async def check(event: CheckResult, meta: EventMeta, *, ctx: Context) -> None:
    # Checkers publish only changes: each is rare and worth a durable acknowledgement.
    await _durably(meta, ctx, lambda: ctx.registry.check(event, meta.id, to_us(meta.time)))


async def _durably(meta: EventMeta, ctx: Context, apply: Callable[[], object]) -> None:
    """Apply an event once (its inbox mark, by id), then wait for the flush that commits the
    effect, the mark and the events it caused: only then is it acknowledged."""
    if not ctx.journal.seen(meta.id):
        apply()
        ctx.journal.mark(meta.id)
    await ctx.journal.flush()


async def heartbeat(event: Heartbeat, meta: EventMeta, *, ctx: Context) -> None:
    ctx.registry.heartbeat(event, meta.id, to_us(meta.time))


async def heartbeats(event: Heartbeats, meta: EventMeta, *, ctx: Context) -> None:
    at = to_us(meta.time)
    for number, beat in enumerate(event.beats):
        # Each beat is its own heartbeat: what it derives needs an id of its own, and the
        # same one on a redelivery or a replay.
        ctx.registry.heartbeat(beat, f"{meta.id}/{number}", at)


async def resource(
    event: ResourceCreated | ResourceUpdated | ResourceStatusChanged | ResourceDeleted,
    meta: EventMeta,
    *,
    ctx: Context,
) -> None:
    placed = event.resource
    deleted = isinstance(event, ResourceDeleted)
    if ctx.registry.place(placed.id, placed.host, event.version, deleted=deleted):
        await ctx.journal.flush()
