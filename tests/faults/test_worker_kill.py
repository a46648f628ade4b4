"""Fault 4: kill -9 of a worker process before and after its database commit, in a loop.

A real process (`_inbox_worker.py`: a bus consumer applying each event through the SQLite
inbox) SIGKILLs itself inside a transaction before the commit, or after the commit and before
the ack, at a different message each round. The broker redelivers what was unacknowledged;
the inbox makes the second delivery of a committed event a no-op. At the end every event has
exactly one effect and the queue is empty.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from bus import Bus
from bus.topology import declare_worker_queue, worker_queue
from tests._wait import eventually
from tests.faults._harness import (
    Effects,
    Ledger,
    Load,
    delete_queues,
    ready,
    spawn,
    tick_model,
    wait_drained,
    wait_exit,
)

pytestmark = pytest.mark.faults

EVENTS = 240
ROUNDS = 6


async def test_kill_9_before_and_after_commit_in_a_loop(node, unique, tmp_path):
    url = node.url + "?heartbeat=2"
    queue = f"{unique}.kill"
    model = tick_model(f"{unique}.tick")
    db = f"sqlite+aiosqlite:///{tmp_path}/effects.db"
    deliveries = tmp_path / "deliveries.log"
    ledger = Ledger("kill -9 before and after commit")
    rng = random.Random(7)
    async with Bus(url, source="faults-publisher") as publisher:
        await declare_worker_queue(publisher.transport, worker_queue(queue), [model.TYPE])
        load = Load(publisher, model, ledger)
        await asyncio.gather(*(load.publish(i) for i in range(EVENTS)))
    children = []
    try:
        kills = {"before": 0, "after": 0}
        for round_ in range(ROUNDS):
            when = ("before", "after")[round_ % 2]
            child = spawn(
                url,
                queue,
                model.TYPE,
                db,
                deliveries,
                "--crash",
                when,
                "--crash-at",
                str(rng.randint(5, 30)),
            )
            children.append(child)
            code = await wait_exit(child, 60)
            assert code == -signal.SIGKILL, f"round {round_}: exit {code}"
            kills[when] += 1
        ledger.extra["kills"] = kills

        # A last worker, left alone, drains the queue.
        killed_at = time.monotonic()
        child = spawn(url, queue, model.TYPE, db, deliveries)
        children.append(child)
        await ready(child)
        effects = Effects(db, queue)
        try:

            async def all_applied() -> bool:
                await effects.tally(ledger)
                return len(ledger.effect_ids) >= EVENTS

            await eventually(all_applied, timeout=60, interval=0.1, what="every effect applied")
            ledger.recover_s.append(round(time.monotonic() - killed_at, 3))
        finally:
            await effects.close()
        assert await node.aqueue_consumers(queue) == 1
        async with Bus(url, source="faults-observer") as observer:
            await wait_drained(observer, queue)  # nothing left on the queue
            ledger.dead_lettered, _ = await observer.transport.queue_state(f"{queue}.dlq")
        child.send_signal(signal.SIGTERM)
        assert await wait_exit(child, 20) == 0, "the worker did not stop gracefully on SIGTERM"
        ledger.deliveries = [line for line in deliveries.read_text().splitlines() if line.strip()]
        ledger.delivered_at = [0.0] * len(ledger.deliveries)
        ledger.assert_safe()
        assert len(ledger.effect_ids) == EVENTS
        assert ledger.dead_lettered == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        await delete_queues(url, [queue, f"{queue}.dlq"])
