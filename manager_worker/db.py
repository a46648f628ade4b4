"""The manager's table: one row per resource, on the shared `bus.store.Base` metadata.

Kind-specific fields (`vcpus`, `size_gb`, `cidr`, ...) live in the JSON column `fields`;
what the manager queries on (`kind`, `name`, `status`, `host`, `attached_to`) has its own
column. `version` is the optimistic-concurrency token: every write is
`UPDATE ... WHERE id = :id AND version = :expected`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from bus.store import Base
from schemas import RESOURCE_ADAPTER, Network, Vm, Volume

StoredResource = Vm | Volume | Network

SPEC_COLUMNS = ("kind", "name", "labels")
STORED_COLUMNS = ("id", "status", "host", "version", "created_at", "updated_at")


class ResourceRow(Base):
    __tablename__ = "manager_resources"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(63), unique=True)
    labels: Mapped[dict[str, str]] = mapped_column(JSON)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    host: Mapped[str | None] = mapped_column(String(128), nullable=True)
    attached_to: Mapped[str | None] = mapped_column(String(63), nullable=True)
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_manager_resources_host", "host"),
        Index("ix_manager_resources_attached_to", "attached_to"),
    )


class HostRow(Base):
    """The last health the registry announced for a host (`gone` once expired or deregistered).

    Written by the reactions and read when a VM is placed, both after taking the row's lock,
    so a placement and a host failure arriving together serialize on it.
    """

    __tablename__ = "manager_hosts"

    instance_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


def _utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes even for timezone-aware columns; they were UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def to_resource(row: ResourceRow) -> StoredResource:
    """The wire form of a stored row."""
    return RESOURCE_ADAPTER.validate_python(
        {
            **row.fields,
            "kind": row.kind,
            "name": row.name,
            "labels": row.labels,
            "id": row.id,
            "status": row.status,
            "host": row.host,
            "version": row.version,
            "created_at": _utc(row.created_at),
            "updated_at": _utc(row.updated_at),
        }
    )


def to_values(resource: StoredResource) -> dict[str, Any]:
    """The column values of a resource (the inverse of `to_resource`)."""
    data = resource.model_dump(mode="json")
    fields = {k: v for k, v in data.items() if k not in SPEC_COLUMNS + STORED_COLUMNS}
    return {
        "id": resource.id,
        "kind": resource.kind,
        "name": resource.name,
        "labels": dict(resource.labels),
        "fields": fields,
        "status": resource.status,
        "host": resource.host,
        "attached_to": getattr(resource, "attached_to", None),
        "version": resource.version,
        # UTC: SQLite keeps no offset, and a derived change takes its cause's time as sent.
        "created_at": resource.created_at.astimezone(UTC),
        "updated_at": resource.updated_at.astimezone(UTC),
    }
