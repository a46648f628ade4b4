"""Fault 1: `rabbitmqctl stop_app` then `start_app` while events are published and consumed.

The publisher retries every unconfirmed publish with the same event id; the consumer applies
each event through the SQLite inbox. Nothing confirmed is lost, nothing is applied twice.
"""

from __future__ import annotations

import time

import pytest

from bus import Bus, ConsumerPolicy, EventMeta
from tests._wait import eventually
from tests.faults._harness import (
    Effects,
    Ledger,
    Load,
    Tick,
    delete_queues,
    tick_model,
    wait_drained,
)

pytestmark = pytest.mark.faults


async def test_broker_restart_under_load_loses_nothing_and_applies_nothing_twice(
    node, unique, tmp_path
):
    url = node.url + "?heartbeat=2"
    queue = f"{unique}.restart"
    model = tick_model(f"{unique}.tick")
    ledger = Ledger("broker restart under load")
    effects = Effects(f"sqlite+aiosqlite:///{tmp_path}/effects.db", queue)
    await effects.setup()

    async def on_tick(event: Tick, meta: EventMeta) -> None:
        ledger.delivered(meta.id)
        await effects.apply(meta.id, event.seq)

    consumer_bus = Bus(url, source="faults-consumer")
    publisher_bus = Bus(url, source="faults-publisher")
    await consumer_bus.start()
    await publisher_bus.start()
    try:
        await consumer_bus.subscribe(
            queue,
            [model.TYPE],
            {model.TYPE: on_tick},
            {model.TYPE: model},
            policy=ConsumerPolicy(prefetch=50),
        )
        consumers_before = await node.aqueue_consumers(queue)
        load = Load(publisher_bus, model, ledger)
        load.start()
        await eventually(lambda: len(ledger.deliveries) >= 200, timeout=20, what="flow")

        fault_at = time.monotonic()
        await node.astop_app()
        down_for_s = time.monotonic() - fault_at
        await node.astart_app()
        back_at = time.monotonic()
        ledger.extra["outage_s"] = round(back_at - fault_at, 2)
        ledger.extra["stop_app_s"] = round(down_for_s, 2)

        await eventually(lambda: consumer_bus.ready and publisher_bus.ready, timeout=30)
        await eventually(
            lambda: (
                any(t > back_at for t in ledger.delivered_at)
                and any(t > back_at for t in ledger.confirmed_at)
            ),
            timeout=30,
            what="flow after the restart",
        )
        await ledger.recovered_after(back_at)
        # a little more load after recovery: more events confirmed than before it
        confirmed = len(ledger.confirmed)
        await eventually(lambda: len(ledger.confirmed) >= confirmed + 50, timeout=30)
        await load.stop()

        await eventually(
            lambda: ledger.confirmed <= ledger.received_unique, timeout=30, what="every event"
        )
        await wait_drained(consumer_bus, queue)
        assert await node.aqueue_consumers(queue) == consumers_before == 1
        dlq_ready, _ = await consumer_bus.transport.queue_state(f"{queue}.dlq")
        ledger.dead_lettered = dlq_ready
        await effects.tally(ledger)
        ledger.assert_safe()
        assert ledger.dead_lettered == 0
        assert ledger.effect_ids >= ledger.confirmed
    finally:
        await publisher_bus.close()
        await consumer_bus.close()
        await effects.close()
        await delete_queues(url, [queue, f"{queue}.dlq"])
