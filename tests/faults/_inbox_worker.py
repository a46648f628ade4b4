"""A small worker process for the kill -9 tests: bus consumer + SQLite inbox + effects.

    python -m tests.faults._inbox_worker URL QUEUE TYPE DB DELIVERIES_FILE [--crash before|after
        --crash-at N] [--poison] [--prefetch N]

It applies each event's effect and its inbox mark in one transaction. With `--crash before` it
SIGKILLs itself inside the N-th transaction, before the commit; with `--crash after`, after the
N-th commit and before the ack. With `--poison` it SIGKILLs itself on every event marked
poison, a message that crashes its worker every time. Every delivery's event id is appended to
DELIVERIES_FILE (one write each) before it is processed. SIGTERM stops it gracefully.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from datetime import UTC, datetime

from sqlalchemy import insert

from bus import Bus, ConsumerPolicy, EventMeta
from bus.store import mark_processed
from tests.faults._harness import EFFECTS, Effects, Tick, tick_model


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


async def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("url", "queue", "type", "db", "deliveries"):
        parser.add_argument(name)
    parser.add_argument("--crash", choices=["before", "after"])
    parser.add_argument("--crash-at", type=int, default=0)
    parser.add_argument("--poison", action="store_true")
    parser.add_argument("--prefetch", type=int, default=5)
    args = parser.parse_args()

    model = tick_model(args.type)
    effects = Effects(args.db, args.queue)
    await effects.setup()
    log = os.open(args.deliveries, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    applied = 0

    async def on_tick(event: Tick, meta: EventMeta) -> None:
        nonlocal applied
        os.write(log, f"{meta.id}\n".encode())
        if args.poison and event.poison:
            _die()
        async with effects.store.unit_of_work() as session:
            if not await mark_processed(session, args.queue, meta.id, datetime.now(UTC)):
                return
            await session.execute(insert(EFFECTS).values(event_id=meta.id, seq=event.seq))
            applied += 1
            if args.crash == "before" and applied == args.crash_at:
                await session.flush()
                _die()  # the effect is written, not committed
        if args.crash == "after" and applied == args.crash_at:
            _die()  # committed, not acknowledged

    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with Bus(args.url, source="faults-worker") as bus:
        await bus.subscribe(
            args.queue,
            [model.TYPE],
            {model.TYPE: on_tick},
            {model.TYPE: model},
            policy=ConsumerPolicy(prefetch=args.prefetch),
        )
        print("ready", flush=True)
        await stop.wait()
    await effects.close()


if __name__ == "__main__":
    asyncio.run(main())
