"""Fault 2: `rabbitmqctl close_all_connections` with RPC calls in flight.

Every call in flight fails within a second of its connection closing (`ConnectionLost`, not a
wait for its deadline); the bus reconnects by itself and the next call succeeds.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from bus import Bus, BusError, ConnectionLost, Method
from tests._wait import eventually
from tests.faults._harness import Ledger, wait_drained
from tests.faults._harness import Tick as Ping

pytestmark = pytest.mark.faults

IN_FLIGHT = 32


async def test_close_all_connections_fails_calls_in_flight_fast_and_the_next_call_succeeds(
    node, unique
):
    url = node.url + "?heartbeat=2"
    service = f"{unique}.svc"
    method = f"{service}.slow"
    ledger = Ledger("close_all_connections with rpc in flight")
    release = asyncio.Event()

    async def slow(request: Ping) -> dict[str, int]:
        ledger.delivered(f"call-{request.seq}")
        if not request.poison:  # calls made after the fault answer at once
            await release.wait()
        return {"seq": request.seq}

    server = Bus(url, source="faults-server")
    client = Bus(url, source="faults-client")
    await server.start()
    await client.start()
    closed_at: list[float] = []
    client.transport.on_disconnect(lambda exc: closed_at.append(time.monotonic()))
    try:
        await server.serve(service, {method: Method(Ping, slow)})
        consumers_before = await node.aqueue_consumers(f"govbus.rpc.{service}")

        errors: list[tuple[float, BaseException]] = []

        async def call(seq: int) -> None:
            ledger.sent.add(f"call-{seq}")
            try:
                await client.call(method, Ping(seq=seq), timeout=30)
                ledger.confirmed.add(f"call-{seq}")
            except BusError as exc:
                errors.append((time.monotonic(), exc))

        calls = [asyncio.ensure_future(call(i)) for i in range(IN_FLIGHT)]
        await eventually(lambda: len(ledger.deliveries) >= IN_FLIGHT, timeout=10, what="in flight")

        await node.aclose_all_connections()
        await asyncio.wait_for(asyncio.gather(*calls), 5)
        release.set()

        assert closed_at, "the client never saw its connection close"
        assert len(errors) == IN_FLIGHT, f"{IN_FLIGHT - len(errors)} call(s) did not fail"
        assert all(isinstance(exc, ConnectionLost) for _, exc in errors), errors[:3]
        slowest = max(t for t, _ in errors) - closed_at[0]
        ledger.extra["slowest_error_after_close_s"] = round(slowest, 3)
        assert slowest < 1.0, f"a call in flight failed {slowest:.2f} s after the close"

        # Both ends reconnect by themselves (the server re-declares its queue); the next call
        # succeeds. In the gap before the server is back, a call is `NoResponder` at once.
        await eventually(lambda: server.ready and client.ready, timeout=15, what="reconnect")
        ledger.sent.add(f"call-{IN_FLIGHT}")
        reply = await client.call(method, Ping(seq=IN_FLIGHT, poison=True), timeout=30)
        assert reply == {"seq": IN_FLIGHT}
        ledger.confirmed.add(f"call-{IN_FLIGHT}")
        ledger.recover_s.append(round(time.monotonic() - closed_at[0], 3))
        assert await node.aqueue_consumers(f"govbus.rpc.{service}") == consumers_before == 1
        # requests whose connection died are redelivered, answered into the void, and acked
        await wait_drained(server, f"govbus.rpc.{service}")
        ledger.extra["failed_fast"] = len(errors)
        # the calls that failed were told so at once: none is lost; the answered one counts
        ledger.report()
        assert ledger.confirmed == {f"call-{IN_FLIGHT}"}
    finally:
        release.set()
        await client.close()
        await server.close()
