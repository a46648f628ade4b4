"""The manager's reactions to events: host health from the registry, drift from host agents.

Each runs in one unit of work with its inbox mark, so a redelivered event changes nothing the
second time. The events it derives get ids from `caused_id(cause, resource, type)` and the
cause's time, so replaying the same log regenerates exactly the same events.

Host health: `critical`, `expired` and `deregistered` make the host's active resources
`unreachable`; back to `passing`/`warning` (or registered again healthy) makes its unreachable
resources `active`. `draining` changes nothing: what runs there keeps running. The last health
of every host is kept (`manager_hosts`) so a VM placed on a host that just failed starts
`unreachable`.
"""

from __future__ import annotations

import logging

from bus.message import EventMeta
from bus.store import mark_processed
from manager_worker import inventory
from manager_worker.config import HOST_SERVICE
from manager_worker.context import Context
from manager_worker.drift import compare
from manager_worker.outbox import caused_id, stage
from schemas import (
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatusChanged,
    ResourceDrift,
    ResourceObserved,
    ResourceStatus,
    ResourceStatusChanged,
)

log = logging.getLogger(__name__)

ALL_STATUSES: tuple[ResourceStatus, ...] = ("pending", "active", "unreachable", "deleting", "error")
LOST_FROM: tuple[ResourceStatus, ...] = ("active", "pending")
HEALTHY = ("passing", "warning")
GONE = "gone"
"""The health recorded for a host that expired or was deregistered."""
DOWN = ("critical", GONE)


async def on_status_changed(event: InstanceStatusChanged, meta: EventMeta, *, ctx: Context) -> None:
    if event.service == HOST_SERVICE:
        reason = "host_critical" if event.status == "critical" else "host_recovered"
        await _host_health(ctx, meta, event.instance_id, event.status, reason)


async def on_expired(event: InstanceExpired, meta: EventMeta, *, ctx: Context) -> None:
    if event.service == HOST_SERVICE:
        await _host_health(ctx, meta, event.instance_id, GONE, "host_expired")


async def on_deregistered(event: InstanceDeregistered, meta: EventMeta, *, ctx: Context) -> None:
    if event.service == HOST_SERVICE:
        await _host_health(ctx, meta, event.instance_id, GONE, "host_deregistered")


async def on_registered(event: InstanceRegistered, meta: EventMeta, *, ctx: Context) -> None:
    instance = event.instance
    if instance.service == HOST_SERVICE:
        reason = "host_critical" if instance.status == "critical" else "host_registered"
        await _host_health(ctx, meta, instance.instance_id, instance.status, reason)


async def on_observed(event: ResourceObserved, meta: EventMeta, *, ctx: Context) -> None:
    """Compare what a host agent sees with what should run there; publish the differences."""
    async with ctx.store.unit_of_work() as session:
        if not await mark_processed(session, ctx.consumer, meta.id, ctx.clock.now()):
            return
        desired = await inventory.on_host(session, event.host, ALL_STATUSES)
        drift = compare(event.host, desired, event.resources)
        if drift is None:
            return
        stage(
            session,
            drift,
            event_id=caused_id(meta.id, event.host, ResourceDrift.TYPE),
            time=meta.time,
        )
    ctx.notify()


async def _host_health(ctx: Context, meta: EventMeta, host: str, health: str, reason: str) -> None:
    """Record the host's health and move its resources accordingly, one event each:
    `critical`/`gone` make active ones `unreachable`, `passing`/`warning` make unreachable
    ones `active`, `draining` changes none."""
    if health in DOWN:
        from_statuses, status = LOST_FROM, "unreachable"
    elif health in HEALTHY:
        from_statuses, status = ("unreachable",), "active"
    else:
        from_statuses, status = (), "active"
    async with ctx.store.unit_of_work() as session:
        if not await mark_processed(session, ctx.consumer, meta.id, ctx.clock.now()):
            return
        # First, so a VM being placed on this host right now waits for this change (or this
        # change sees the VM): see `commands.create`.
        await inventory.set_host(session, host, health, meta.time)
        changed = 0
        for previous in from_statuses:
            for moved in await inventory.move_on_host(session, host, previous, status, meta.time):
                stage(
                    session,
                    ResourceStatusChanged(
                        resource=moved,
                        version=moved.version,
                        previous=previous,
                        status=status,
                        reason=reason,
                    ),
                    event_id=caused_id(meta.id, moved.id, ResourceStatusChanged.TYPE),
                    time=meta.time,
                )
                changed += 1
    if changed:
        log.info("host %s: %d resource(s) now %s (%s)", host, changed, status, reason)
        ctx.notify()
