"""Publishing the worker's committed derived events from the `bus.store` outbox.

Like `bus.store.OutboxRelay`, but only for rows of one `source` and driven by the worker
(after each flush, under the journal's lock) instead of a polling task: another worker sharing
the database (as in `govbus up`) relays its own rows, so nothing is published twice by design.
Publishing stays at-least-once (a crash between publish and mark); consumers de-duplicate by id.
"""

from __future__ import annotations

import contextlib

from sqlalchemy import delete, select, update

from bus.errors import Unroutable
from bus.message import event_message
from bus.store import OutboxRow, Store
from bus.topology import EVENTS
from bus.transport.base import Transport


async def relay(store: Store, transport: Transport, source: str, *, batch: int = 500) -> int:
    """Publish the unsent rows of `source` in order and mark them sent; returns how many."""
    total = 0
    while True:
        async with store.unit_of_work() as session:
            rows = (
                await session.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.sent == 0, OutboxRow.source == source)
                    .order_by(OutboxRow.seq)
                    .limit(batch)
                )
            ).all()
        if not rows:
            return total
        sent: list[int] = []
        try:
            for row in rows:
                message = event_message(
                    event_type=row.event_type,
                    body=row.body,
                    event_id=row.event_id,
                    source=row.source,
                    time=row.time,
                    traceparent=row.traceparent,
                )
                # Unroutable: nobody listens for this type (only on the embedded broker; on
                # RabbitMQ the log stream takes every event). Retrying would block the rest.
                with contextlib.suppress(Unroutable):
                    await transport.publish(EVENTS, row.event_type, message)
                sent.append(row.seq)
        finally:
            if sent:
                async with store.unit_of_work() as session:
                    await session.execute(
                        update(OutboxRow).where(OutboxRow.seq.in_(sent)).values(sent=1)
                    )
                total += len(sent)


async def prune(store: Store, source: str, *, keep: int = 10_000) -> None:
    """Forget the sent rows of `source` beyond the newest `keep` rows of the outbox."""
    async with store.unit_of_work() as session:
        newest = await session.scalar(select(OutboxRow.seq).order_by(OutboxRow.seq.desc()).limit(1))
        if newest is not None:
            await session.execute(
                delete(OutboxRow).where(
                    OutboxRow.sent == 1,
                    OutboxRow.source == source,
                    OutboxRow.seq <= newest - keep,
                )
            )
