"""Fault 6: poison messages, while the other messages keep flowing.

- A message whose handler always fails is retried by the consumer policy, then dead-lettered
  to `<queue>.dlq` with the reason (`x-govbus-error`, `x-govbus-attempts`); the good messages
  around it are all applied once.
- A message that kills its worker process every time (SIGKILL, so no policy can run) is
  dead-lettered by the broker once the quorum queue's delivery limit is reached
  (`x-first-death-reason: delivery_limit`); then the messages behind it flow again. The
  worker takes one message at a time here: RabbitMQ 3.10 counts a delivery against every
  message a dying consumer held, so with a prefetch of N the N-1 innocent messages behind the
  pill reach the delivery limit with it and are dead-lettered too (they are not lost: they are
  in the DLQ with the same reason, to be shovelled back).
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from bus import Bus, ConsumerPolicy, EventMeta
from bus.topology import DELIVERY_LIMIT, declare_worker_queue, worker_queue
from tests._wait import eventually
from tests.faults._harness import (
    Effects,
    Ledger,
    Load,
    Tick,
    dead_letters,
    delete_queues,
    event_id,
    ready,
    spawn,
    tick_model,
    wait_exit,
)

pytestmark = pytest.mark.faults

GOOD = 400
POISON_EVERY = 80


async def test_a_failing_handler_dead_letters_with_the_reason_while_others_flow(
    node, unique, tmp_path
):
    url = node.url + "?heartbeat=2"
    queue = f"{unique}.poison"
    model = tick_model(f"{unique}.tick")
    ledger = Ledger("poison: failing handler")
    effects = Effects(f"sqlite+aiosqlite:///{tmp_path}/effects.db", queue)
    await effects.setup()

    async def on_tick(event: Tick, meta: EventMeta) -> None:
        ledger.delivered(meta.id)
        if event.poison:
            raise RuntimeError(f"poison {event.seq}")
        await effects.apply(meta.id, event.seq)

    async with Bus(url, source="faults-worker") as worker, Bus(url, source="faults-pub") as pub:
        try:
            await worker.subscribe(
                queue,
                [model.TYPE],
                {model.TYPE: on_tick},
                {model.TYPE: model},
                policy=ConsumerPolicy(prefetch=50, backoff_initial_s=0.01, backoff_max_s=0.05),
            )
            load = Load(pub, model, ledger)
            poisoned = {event_id(model.TYPE, s) for s in range(0, GOOD, POISON_EVERY)}
            began = time.monotonic()
            await asyncio.gather(
                *(load.publish(s, poison=s % POISON_EVERY == 0) for s in range(GOOD))
            )
            good = ledger.confirmed - poisoned
            await effects.tally(ledger)
            await eventually(lambda: good <= ledger.received_unique, timeout=30)
            ledger.recover_s.append(round(time.monotonic() - began, 3))

            async def drained() -> bool:
                left, _ = await worker.transport.queue_state(queue)
                dlq, _ = await worker.transport.queue_state(f"{queue}.dlq")
                return left == 0 and dlq == len(poisoned)

            await eventually(drained, timeout=10, interval=0.05, what="queue drained, DLQ full")
            assert await node.aqueue_consumers(queue) == 1
            letters = await dead_letters(url, f"{queue}.dlq")
            ledger.dead_lettered = len(letters)
            assert {m.message_id for m in letters} == poisoned
            for message in letters:
                headers = message.headers or {}
                assert "RuntimeError: poison" in str(headers["x-govbus-error"])
                assert headers["x-govbus-attempts"] == ConsumerPolicy().max_attempts
            await effects.tally(ledger)
            # the poison messages are accounted for in the DLQ, not lost
            ledger.effect_ids |= poisoned
            ledger.effects += len(poisoned)
            ledger.assert_safe()
            assert ledger.effect_ids == ledger.confirmed
        finally:
            await effects.close()
            await delete_queues(url, [queue, f"{queue}.dlq"])


async def test_a_message_that_kills_its_worker_is_dead_lettered_by_the_delivery_limit(
    node, unique, tmp_path
):
    url = node.url + "?heartbeat=2"
    queue = f"{unique}.pill"
    model = tick_model(f"{unique}.tick")
    db = f"sqlite+aiosqlite:///{tmp_path}/effects.db"
    deliveries = tmp_path / "deliveries.log"
    ledger = Ledger("poison: kills its worker every time")
    async with Bus(url, source="faults-publisher") as publisher:
        await declare_worker_queue(publisher.transport, worker_queue(queue), [model.TYPE])
        load = Load(publisher, model, ledger)
        for s in range(40):  # the poison pill first, the rest queued behind it
            await load.publish(s, poison=s == 0)
    children = []
    try:
        began = time.monotonic()
        crashes = 0
        while crashes <= DELIVERY_LIMIT + 1:
            child = spawn(url, queue, model.TYPE, db, deliveries, "--poison", "--prefetch", "1")
            children.append(child)
            await ready(child)
            try:
                code = await wait_exit(child, 5)
            except TimeoutError:
                break  # it survives: the pill is gone
            assert code == -signal.SIGKILL
            crashes += 1
        ledger.extra["worker_crashes"] = crashes
        assert crashes >= DELIVERY_LIMIT, "the pill was dead-lettered too early"
        effects = Effects(db, queue)
        try:

            async def all_but_the_pill_applied() -> bool:
                await effects.tally(ledger)
                return len(ledger.effect_ids) == 39

            await eventually(all_but_the_pill_applied, timeout=15, interval=0.05)
        finally:
            await effects.close()
        ledger.recover_s.append(round(time.monotonic() - began, 3))
        assert await node.aqueue_consumers(queue) == 1
        letters = await dead_letters(url, f"{queue}.dlq")
        ledger.dead_lettered = len(letters)
        pill = event_id(model.TYPE, 0)
        assert [m.message_id for m in letters] == [pill]
        headers = letters[0].headers or {}
        assert str(headers.get("x-first-death-reason")) == "delivery_limit", headers
        async with Bus(url, source="faults-observer") as observer:
            left, _ = await observer.transport.queue_state(queue)
        assert left == 0
        child = children[-1]
        child.send_signal(signal.SIGTERM)
        assert await wait_exit(child, 20) == 0
        ledger.deliveries = [x for x in deliveries.read_text().splitlines() if x.strip()]
        ledger.effect_ids.add(pill)
        ledger.effects += 1
        ledger.assert_safe()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
            if child.stdout is not None:
                child.stdout.close()
        await delete_queues(url, [queue, f"{queue}.dlq"])
