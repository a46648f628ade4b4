"""The manager's RPC methods: queries and the changes users ask for.

Each change runs in one unit of work: the version-checked write and its events in the outbox
commit together, then the relay is woken. Placement (an RPC to the discovery worker) happens
before that transaction opens, so no database lock is ever held across it and a failed pick
writes nothing.

Creating a VM is one transaction with two events: `resource.created` (version 1, `pending`,
on its host) then `resource.status_changed` (version 2, `active`, reason `placed`; or
`unreachable`, reason `placed_on_critical_host`/`placed_on_gone_host`, when the registry said the
host failed between the pick and the commit). Volumes and
networks need no placement and are created `active` at version 1.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bus.errors import Conflict, Invalid, NotFound
from bus.validation import invalid
from manager_worker import inventory
from manager_worker.context import Context
from manager_worker.db import StoredResource
from manager_worker.outbox import new_id, stage
from schemas import (
    CreateResourceRequest,
    DeleteReply,
    DeleteResourceRequest,
    Network,
    ResourceCreated,
    ResourceDeleted,
    ResourcePage,
    ResourceReply,
    ResourceRequest,
    ResourcesRequest,
    ResourceStatusChanged,
    ResourceUpdated,
    UpdateResourceRequest,
    Vm,
    VmSpec,
    Volume,
    VolumeSpec,
    validate_patch,
)

STORED: dict[str, type[Vm] | type[Volume] | type[Network]] = {
    "vm": Vm,
    "volume": Volume,
    "network": Network,
}


async def list_resources(request: ResourcesRequest, *, ctx: Context) -> ResourcePage:
    async with ctx.store.unit_of_work() as session:
        items, cursor = await inventory.page(
            session,
            kind=request.kind,
            status=request.status,
            labels=request.label,
            after=request.cursor,
            limit=request.limit,
            scan=ctx.page_scan,
        )
    return ResourcePage(items=items, next=cursor)


async def get_resource(request: ResourceRequest, *, ctx: Context) -> ResourceReply:
    async with ctx.store.unit_of_work() as session:
        resource = await inventory.by_name(session, request.name)
    if resource is None:
        raise NotFound(f"no resource named {request.name!r}", {"name": request.name})
    return ResourceReply(resource)


async def create(request: CreateResourceRequest, *, ctx: Context) -> ResourceReply:
    spec = request.spec
    async with ctx.store.unit_of_work() as session:
        # Cheap checks first, so a doomed request never costs a placement.
        if await inventory.by_name(session, spec.name) is not None:
            raise _name_taken(spec.name)
        if isinstance(spec, VolumeSpec) and spec.attached_to is not None:
            target = await inventory.by_name(session, spec.attached_to)
            if target is None or target.kind != "vm":
                raise _no_vm(spec.attached_to, "spec.attached_to")
    host = await ctx.placement.pick_host() if isinstance(spec, VmSpec) else None
    now = ctx.clock.now()
    fields: dict[str, Any] = {
        **spec.model_dump(),
        "id": new_id(),
        "host": host,
        "created_at": now,
        "updated_at": now,
    }
    placed: StoredResource
    async with ctx.store.unit_of_work() as session:
        if isinstance(spec, VmSpec):
            assert host is not None
            pending = Vm.model_validate({**fields, "status": "pending", "version": 1})
            # The host may have failed since the pick; its row lock orders us with that event.
            health = await inventory.hold_host(session, host)
            down = health in ("critical", "gone")
            placed = pending.model_copy(
                update={"status": "unreachable" if down else "active", "version": 2}
            )
            await inventory.add(session, placed)
            stage(
                session, ResourceCreated(resource=pending, version=1), event_id=new_id(), time=now
            )
            stage(
                session,
                ResourceStatusChanged(
                    resource=placed,
                    version=2,
                    previous="pending",
                    status=placed.status,
                    reason=f"placed_on_{health}_host" if down else "placed",
                ),
                event_id=new_id(),
                time=now,
            )
        else:
            fields["status"] = "active"
            if isinstance(spec, VolumeSpec) and spec.attached_to is not None:
                vm = await _attachable(session, spec.attached_to, "spec.attached_to")
                fields.update(_following(vm))
            placed = STORED[spec.kind].model_validate({**fields, "version": 1})
            await inventory.add(session, placed)
            stage(session, ResourceCreated(resource=placed, version=1), event_id=new_id(), time=now)
    ctx.notify()
    return ResourceReply(placed)


async def update(request: UpdateResourceRequest, *, ctx: Context) -> ResourceReply:
    now = ctx.clock.now()
    async with ctx.store.unit_of_work() as session:
        current = await _existing(session, request.name)
        if current.version != request.expected_version:
            raise _stale(current, request.expected_version)
        try:
            changes = validate_patch(current.kind, request.changes.changes()).changes()
        except ValidationError as exc:
            raise invalid(exc, prefix="changes") from None
        extra: dict[str, Any] = {}
        if "attached_to" in changes:
            target = changes["attached_to"]
            if target is None:
                extra = {"host": None, "status": "active"}
            else:
                vm = await _attachable(session, target, "changes.attached_to")
                extra = _following(vm)
        # Only fields a request may set: replay re-runs an update from this list.
        changed = sorted(k for k, v in changes.items() if getattr(current, k) != v)
        if not changed:
            return ResourceReply(current)  # nothing differs: no new version, no event
        updated = STORED[current.kind].model_validate(
            {
                **current.model_dump(),
                **changes,
                **extra,
                "version": current.version + 1,
                "updated_at": now,
            }
        )
        if not await inventory.replace(session, current.version, updated):
            raise _stale(current, request.expected_version)
        stage(
            session,
            ResourceUpdated(resource=updated, version=updated.version, changed=changed),
            event_id=new_id(),
            time=now,
        )
    ctx.notify()
    return ResourceReply(updated)


async def delete(request: DeleteResourceRequest, *, ctx: Context) -> DeleteReply:
    now = ctx.clock.now()
    async with ctx.store.unit_of_work() as session:
        current = await _existing(session, request.name)
        if request.expected_version is not None and current.version != request.expected_version:
            raise _stale(current, request.expected_version)
        # Without `expected_version` the delete applies to whatever version is current (a host
        # event may just have moved it); with one, only to that version.
        removed = await inventory.remove(session, current.id, request.expected_version)
        if removed is None and request.expected_version is None:
            raise NotFound(f"no resource named {request.name!r}", {"name": request.name})
        if removed is None:
            raise _stale(current, request.expected_version or current.version)
        current = removed
        if current.kind == "vm":
            # Checked after the delete took the row lock: see `inventory.hold_vm`.
            volumes = await inventory.attached_to(session, current.name)
            if volumes:
                raise Conflict(
                    f"volumes are attached to {current.name!r}: detach them first",
                    {"name": current.name, "attached": [v.name for v in volumes]},
                )
        gone = current.model_copy(update={"version": current.version + 1, "updated_at": now})
        stage(
            session,
            ResourceDeleted(resource=gone, version=gone.version),
            event_id=new_id(),
            time=now,
        )
    ctx.notify()
    return DeleteReply(name=gone.name, version=gone.version)


# --- helpers ----------------------------------------------------------------------------------


async def _existing(session: AsyncSession, name: str) -> StoredResource:
    resource = await inventory.by_name(session, name)
    if resource is None:
        raise NotFound(f"no resource named {name!r}", {"name": name})
    return resource


async def _attachable(session: AsyncSession, name: str, field: str) -> StoredResource:
    vm = await inventory.hold_vm(session, name)
    if vm is None:
        raise _no_vm(name, field)
    return vm


def _no_vm(name: str, field: str) -> Invalid:
    return Invalid(
        f"{field}: no vm named {name!r}",
        {"errors": [{"field": field, "message": f"no vm named {name!r}"}]},
    )


def _following(vm: StoredResource) -> dict[str, Any]:
    """Where an attached volume lives: on its VM's host, reachable when the VM is."""
    return {"host": vm.host, "status": "unreachable" if vm.status == "unreachable" else "active"}


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"a resource named {name!r} already exists", {"field": "spec.name", "name": name}
    )


def _stale(current: StoredResource, expected: int) -> Conflict:
    return Conflict(
        f"{current.name!r} is not at version {expected} (another change came first)",
        {"name": current.name, "expected_version": expected, "version": current.version},
    )
