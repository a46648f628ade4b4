"""Fault 3: a TCP reset, then a TCP blackhole, through `TcpProxy`, under load.

Publisher and consumer both reach the private node through the proxy with a 1 s AMQP
heartbeat. A reset is seen at once; a blackhole (no RST, no FIN: a partition) only by missed
heartbeats. After healing, both reconnect by themselves; nothing confirmed is lost and nothing
is applied twice. (tests/integration/test_reconnect.py covers the same faults without load.)
"""

from __future__ import annotations

import time

import pytest

from bus import Bus, ConsumerPolicy, EventMeta
from tests._proxy import TcpProxy
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


async def test_tcp_reset_and_blackhole_under_load(node, unique, tmp_path):
    queue = f"{unique}.tcp"
    model = tick_model(f"{unique}.tick")
    ledger = Ledger("tcp reset and blackhole under load")
    effects = Effects(f"sqlite+aiosqlite:///{tmp_path}/effects.db", queue)
    await effects.setup()

    async def on_tick(event: Tick, meta: EventMeta) -> None:
        ledger.delivered(meta.id)
        await effects.apply(meta.id, event.seq)

    async with TcpProxy("127.0.0.1", node.port) as proxy:
        url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/?heartbeat=1"
        consumer_bus = Bus(url, source="faults-consumer")
        publisher_bus = Bus(url, source="faults-publisher")
        await consumer_bus.start()
        await publisher_bus.start()
        lost_at: list[float] = []
        consumer_bus.transport.on_disconnect(lambda exc: lost_at.append(time.monotonic()))
        load = Load(publisher_bus, model, ledger)
        try:
            await consumer_bus.subscribe(
                queue,
                [model.TYPE],
                {model.TYPE: on_tick},
                {model.TYPE: model},
                policy=ConsumerPolicy(prefetch=50),
            )
            load.start()
            await eventually(lambda: len(ledger.deliveries) >= 100, timeout=20, what="flow")

            # A reset: every socket closed with an RST.
            cut_at = time.monotonic()
            await proxy.cut()
            await eventually(lambda: lost_at, timeout=5, what="reset noticed")
            ledger.extra["reset_detected_s"] = round(lost_at[-1] - cut_at, 3)
            await eventually(lambda: consumer_bus.ready and publisher_bus.ready, timeout=20)
            await ledger.recovered_after(cut_at)
            assert await node.aqueue_consumers(queue) == 1

            # A partition: nothing moves, nothing closes, until the heartbeat gives up.
            seen = len(lost_at)
            proxy.blackhole()
            holed_at = time.monotonic()
            await eventually(lambda: len(lost_at) > seen, timeout=15, what="heartbeat timeout")
            ledger.extra["blackhole_detected_s"] = round(lost_at[-1] - holed_at, 3)
            proxy.heal()
            healed_at = time.monotonic()
            await eventually(
                lambda: consumer_bus.ready and publisher_bus.ready, timeout=30, what="recovery"
            )
            await eventually(
                lambda: (
                    any(t > healed_at for t in ledger.delivered_at)
                    and any(t > healed_at for t in ledger.confirmed_at)
                ),
                timeout=30,
                what="flow after healing",
            )
            await ledger.recovered_after(healed_at)
            # a little more load after healing: more events confirmed than before it
            confirmed = len(ledger.confirmed)
            await eventually(lambda: len(ledger.confirmed) >= confirmed + 50, timeout=30)
            await load.stop()

            await eventually(
                lambda: ledger.confirmed <= ledger.received_unique, timeout=30, what="every event"
            )
            assert await node.aqueue_consumers(queue) == 1
            await wait_drained(consumer_bus, queue)
            ledger.dead_lettered, _ = await consumer_bus.transport.queue_state(f"{queue}.dlq")
            await effects.tally(ledger)
            ledger.assert_safe()
            assert ledger.dead_lettered == 0
        finally:
            proxy.heal()
            await load.stop()
            await publisher_bus.close()
            await consumer_bus.close()
            await effects.close()
    await delete_queues(node.url, [queue, f"{queue}.dlq"])
