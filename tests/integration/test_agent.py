"""`bus.agent.ServiceAgent` against a real discovery worker, on both transports."""

from __future__ import annotations

from bus import Bus
from bus.agent import Health, ServiceAgent
from schemas import Deregister
from tests._discovery import Harness, harness, reg
from tests._wait import eventually


async def test_agent_registers_heartbeats_reregisters_and_leaves(broker_url, tmp_path, unique):
    async with harness(broker_url, unique, f"sqlite+aiosqlite:///{tmp_path}/d.db") as h:
        registry = h.worker.registry
        iid = f"{unique}-a"
        loads = iter([0.1, 0.2, 0.3] + [0.4] * 1000)
        async with Bus(broker_url, source="test-agent") as bus:
            agent = ServiceAgent(
                bus,
                reg(unique, "a", ttl_s=2, deregister_after_s=2),
                interval_s=0.05,
                check=lambda: Health(load=next(loads), note="ok"),
            )
            await agent.start()
            await eventually(lambda: iid in registry.instances, what="registered")
            await eventually(lambda: registry.instances[iid].load == 0.4, what="heartbeats")
            await eventually(lambda: agent.heartbeats >= 4, what="confirmed heartbeats")
            assert registry.instances[iid].note == "ok"

            # The registry forgets it (as after an expiry): the next heartbeat is unknown,
            # and the agent registers again by itself.
            await h.publish(Deregister(service=unique, instance_id=iid))
            await eventually(lambda: agent.registrations >= 2, timeout=10, what="re-register")
            await eventually(lambda: iid in registry.instances, what="back")
            assert h.of("registry.heartbeat.unknown")

            await agent.stop()
            await eventually(lambda: iid not in registry.instances, what="deregistered")
            await eventually(
                lambda: (iid, "passing", "draining", "drain_requested") in h.transitions(),
                what="drained first",
            )
            assert not agent.registered


async def test_agent_waits_for_a_missing_worker_and_registers_when_it_comes(memory_url, unique):
    # No discovery worker yet: the registration is unroutable; the agent keeps trying.
    async with Bus(memory_url, source="test-agent") as bus:
        agent = ServiceAgent(bus, reg(unique, "a"), interval_s=0.02)
        await agent.start()
        assert not agent.registered
        h = Harness(memory_url, unique, "sqlite+aiosqlite:///:memory:")
        await h.client.start()
        try:
            await h.start_worker()
            await eventually(lambda: f"{unique}-a" in h.worker.registry.instances)
            assert agent.registered
        finally:
            await agent.stop()
            await h.stop_worker()
            await h.client.close()
