"""The manager's reactions to events: host health from the registry, drift from host agents.

Each runs in one unit of work with its inbox mark, so a redelivered event changes nothing the
second time. The events it derives get ids from `derived_id(cause, resource, type)` and the
cause's time, so replaying the same log regenerates exactly the same events.

Host health: `critical`, `expired` and `deregistered` make the host's active resources
`unreachable`; back to `passing`/`warning` (or registered again healthy) makes its unreachable
resources `active`. `draining` changes nothing: what runs there keeps running.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from bus.errors import Retry
from bus.message import EventMeta
from bus.store import mark_processed
from manager_worker import inventory
from manager_worker.config import HOST_SERVICE
from manager_worker.context import Context
from manager_worker.outbox import derived_id, stage
from schemas import (
    DriftMismatch,
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatusChanged,
    ObservedResource,
    ResourceDrift,
    ResourceObserved,
    ResourceStatus,
    ResourceStatusChanged,
)

log = logging.getLogger(__name__)

ALL_STATUSES: tuple[ResourceStatus, ...] = ("pending", "active", "unreachable", "deleting", "error")
LOST_FROM: tuple[ResourceStatus, ...] = ("active", "pending")
HEALTHY = ("passing", "warning")


async def on_status_changed(event: InstanceStatusChanged, meta: EventMeta, *, ctx: Context) -> None:
    if event.service != HOST_SERVICE:
        return
    if event.status == "critical":
        await _set_status(
            ctx,
            meta,
            event.instance_id,
            from_statuses=LOST_FROM,
            status="unreachable",
            reason="host_critical",
        )
    elif event.status in HEALTHY:
        await _set_status(
            ctx,
            meta,
            event.instance_id,
            from_statuses=("unreachable",),
            status="active",
            reason="host_recovered",
        )


async def on_expired(event: InstanceExpired, meta: EventMeta, *, ctx: Context) -> None:
    if event.service == HOST_SERVICE:
        await _set_status(
            ctx,
            meta,
            event.instance_id,
            from_statuses=LOST_FROM,
            status="unreachable",
            reason="host_expired",
        )


async def on_deregistered(event: InstanceDeregistered, meta: EventMeta, *, ctx: Context) -> None:
    if event.service == HOST_SERVICE:
        await _set_status(
            ctx,
            meta,
            event.instance_id,
            from_statuses=LOST_FROM,
            status="unreachable",
            reason="host_deregistered",
        )


async def on_registered(event: InstanceRegistered, meta: EventMeta, *, ctx: Context) -> None:
    instance = event.instance
    if instance.service == HOST_SERVICE and instance.status in HEALTHY:
        await _set_status(
            ctx,
            meta,
            instance.instance_id,
            from_statuses=("unreachable",),
            status="active",
            reason="host_registered",
        )


async def on_observed(event: ResourceObserved, meta: EventMeta, *, ctx: Context) -> None:
    """Compare what a host agent sees with what should run there; publish the differences."""
    async with ctx.store.unit_of_work() as session:
        if not await mark_processed(session, ctx.consumer, meta.id, ctx.clock.now()):
            return
        desired = {
            (r.kind, r.name): r for r in await inventory.on_host(session, event.host, ALL_STATUSES)
        }
        observed = {(o.kind, o.name): o for o in event.resources}
        missing = [
            ObservedResource(kind=r.kind, name=r.name, status=r.status)
            for key, r in sorted(desired.items())
            if key not in observed
        ]
        unexpected = [o for key, o in sorted(observed.items()) if key not in desired]
        mismatched = [
            DriftMismatch(
                kind=o.kind,
                name=o.name,
                desired_status=desired[key].status,
                observed_status=o.status,
            )
            for key, o in sorted(observed.items())
            if key in desired and desired[key].status != o.status
        ]
        if not (missing or unexpected or mismatched):
            return
        drift = ResourceDrift(
            host=event.host, missing=missing, unexpected=unexpected, mismatched=mismatched
        )
        stage(
            session,
            drift,
            event_id=derived_id(meta.id, event.host, ResourceDrift.TYPE),
            time=meta.time,
        )
    ctx.notify()


async def _set_status(
    ctx: Context,
    meta: EventMeta,
    host: str,
    *,
    from_statuses: Sequence[ResourceStatus],
    status: ResourceStatus,
    reason: str,
) -> None:
    """Move every resource on `host` in `from_statuses` to `status`, one event each."""
    async with ctx.store.unit_of_work() as session:
        if not await mark_processed(session, ctx.consumer, meta.id, ctx.clock.now()):
            return
        changed = 0
        for current in await inventory.on_host(session, host, from_statuses):
            moved = current.model_copy(
                update={"status": status, "version": current.version + 1, "updated_at": meta.time}
            )
            if not await inventory.replace(session, current.version, moved):
                # Another manager changed it since we read it: roll back (inbox mark too) and
                # let the consumer run the whole event again.
                raise Retry(f"{current.name} changed concurrently")
            stage(
                session,
                ResourceStatusChanged(
                    resource=moved,
                    version=moved.version,
                    previous=current.status,
                    status=status,
                    reason=reason,
                ),
                event_id=derived_id(meta.id, current.id, ResourceStatusChanged.TYPE),
                time=meta.time,
            )
            changed += 1
    if changed:
        log.info("host %s: %d resource(s) now %s (%s)", host, changed, status, reason)
        ctx.notify()
