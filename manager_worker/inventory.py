"""Reads and version-checked writes of the resource table, inside a caller's transaction.

Nothing here commits or awaits anything but the database: callers open a unit of work, call
these, stage their events and commit. A write whose `expected` version is no longer current
changes nothing and returns False; the caller turns that into a `conflict` (or a retry).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bus.errors import Conflict
from bus.store import upsert
from manager_worker.db import HostRow, ResourceRow, StoredResource, to_resource, to_values


async def by_name(session: AsyncSession, name: str) -> StoredResource | None:
    row = await session.scalar(select(ResourceRow).where(ResourceRow.name == name))
    return None if row is None else to_resource(row)


async def add(session: AsyncSession, resource: StoredResource) -> None:
    """Insert a new resource; a taken name is a `Conflict` (the transaction must then end)."""
    try:
        await session.execute(insert(ResourceRow).values(**to_values(resource)))
    except IntegrityError as exc:
        raise Conflict(
            f"a resource named {resource.name!r} already exists",
            {"field": "spec.name", "name": resource.name},
        ) from exc


async def replace(session: AsyncSession, expected: int, resource: StoredResource) -> bool:
    """Write `resource` over the row if it is still at version `expected`."""
    values = to_values(resource)
    del values["id"], values["created_at"]
    result = await session.execute(
        update(ResourceRow)
        .where(ResourceRow.id == resource.id, ResourceRow.version == expected)
        .values(**values)
    )
    return bool(getattr(result, "rowcount", 0))


async def remove(
    session: AsyncSession, resource_id: str, expected: int | None
) -> StoredResource | None:
    """Delete the row (only if still at version `expected`, when given); returns it as it was
    deleted, or None if there was nothing to delete."""
    query = delete(ResourceRow).where(ResourceRow.id == resource_id)
    if expected is not None:
        query = query.where(ResourceRow.version == expected)
    row = await session.scalar(
        query.returning(ResourceRow), execution_options={"synchronize_session": False}
    )
    return None if row is None else to_resource(row)


async def on_host(
    session: AsyncSession, host: str, statuses: Sequence[str]
) -> list[StoredResource]:
    """Resources placed on `host` (VMs and the volumes attached to them) in `statuses`."""
    if not statuses:
        return []
    rows = await session.scalars(
        select(ResourceRow)
        .where(ResourceRow.host == host, ResourceRow.status.in_(statuses))
        .order_by(ResourceRow.name)
    )
    return [to_resource(row) for row in rows]


async def attached_to(session: AsyncSession, vm_name: str) -> list[StoredResource]:
    rows = await session.scalars(
        select(ResourceRow).where(ResourceRow.attached_to == vm_name).order_by(ResourceRow.name)
    )
    return [to_resource(row) for row in rows]


async def page(
    session: AsyncSession,
    *,
    kind: str | None,
    status: str | None,
    labels: Mapping[str, str],
    after: str | None,
    limit: int,
    scan: int,
) -> tuple[list[StoredResource], str | None]:
    """Up to `limit` resources in name order after `after`, and the cursor of the next page.

    Kind and status filter in SQL; labels (a JSON column, compared the same way on SQLite
    and PostgreSQL) filter here, reading `scan` rows at a time.
    """
    found: list[StoredResource] = []
    cursor = after
    while True:
        query = select(ResourceRow).order_by(ResourceRow.name).limit(scan)
        if kind is not None:
            query = query.where(ResourceRow.kind == kind)
        if status is not None:
            query = query.where(ResourceRow.status == status)
        if cursor is not None:
            query = query.where(ResourceRow.name > cursor)
        rows = list(await session.scalars(query))
        for row in rows:
            if all(row.labels.get(k) == v for k, v in labels.items()):
                if len(found) == limit:
                    return found, found[-1].name
                found.append(to_resource(row))
        if len(rows) < scan:
            return found, None
        cursor = rows[-1].name


async def hold_vm(session: AsyncSession, name: str) -> StoredResource | None:
    """The VM `name`, row-locked until the transaction ends (None if there is no such VM).

    A no-op UPDATE takes the lock: attaching a volume and deleting its VM then serialize on
    the VM's row, so a volume can never end up attached to a deleted VM.
    """
    result = await session.execute(
        update(ResourceRow)
        .where(ResourceRow.name == name, ResourceRow.kind == "vm")
        .values(version=ResourceRow.version)
    )
    if not getattr(result, "rowcount", 0):
        return None
    return await by_name(session, name)


async def set_host(session: AsyncSession, host: str, status: str, at: datetime) -> None:
    """Record the health of `host` (taking its row lock until the transaction ends)."""
    row = {"instance_id": host, "status": status, "changed_at": at.astimezone(UTC)}
    await upsert(session, HostRow, "instance_id", [row])


async def hold_host(session: AsyncSession, host: str) -> str | None:
    """The recorded health of `host`, row-locked (None if the registry never spoke of it)."""
    await session.execute(
        update(HostRow).where(HostRow.instance_id == host).values(status=HostRow.status)
    )
    return await session.scalar(select(HostRow.status).where(HostRow.instance_id == host))


async def move_on_host(
    session: AsyncSession, host: str, previous: str, status: str, at: datetime
) -> list[StoredResource]:
    """Set every resource on `host` that is `previous` to `status` (version + 1), in one
    statement; returns them as they are now, in name order.

    One `UPDATE ... RETURNING`, not a read then a write: it never loses a race with another
    manager, so host events need no retry however busy the resources are.
    """
    rows = await session.scalars(
        update(ResourceRow)
        .where(ResourceRow.host == host, ResourceRow.status == previous)
        .values(status=status, version=ResourceRow.version + 1, updated_at=at.astimezone(UTC))
        .returning(ResourceRow),
        execution_options={"synchronize_session": False},
    )
    return sorted((to_resource(row) for row in rows), key=lambda r: r.name)
