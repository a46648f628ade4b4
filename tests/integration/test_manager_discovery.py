"""The manager with the real discovery worker: placement on the least-loaded passing host, and
host health followed from the registry's own transitions (driven by a virtual clock)."""

from __future__ import annotations

from datetime import timedelta

from bus import Bus, VirtualClock
from bus.errors import Unavailable
from discovery_worker import SOURCE as DISCOVERY_SOURCE
from discovery_worker import DiscoveryConfig
from discovery_worker import bootstrap as discovery_bootstrap
from schemas import Heartbeat, Register
from tests._manager import T0, discovery_namespace, harness
from tests._wait import eventually


async def test_placement_and_host_health_through_the_real_discovery_worker(
    broker_url, tmp_path, unique
):
    clock = VirtualClock(T0)
    namespace = discovery_namespace(broker_url, unique)
    discovery_bus = Bus(broker_url, source=DISCOVERY_SOURCE, clock=clock)
    await discovery_bus.start()
    discovery = await discovery_bootstrap(
        bus=discovery_bus,
        db_url=f"sqlite+aiosqlite:///{tmp_path}/discovery.db",
        clock=clock,
        config=DiscoveryConfig(queue=f"{unique}.discovery", service=namespace),
    )
    await discovery.start()
    try:
        async with harness(
            broker_url,
            f"sqlite+aiosqlite:///{tmp_path}/manager.db",
            unique,
            discovery=False,
            clock=clock,
        ) as h:
            agent = Bus(broker_url, source="host-agent", clock=clock)
            await agent.start()
            try:
                # No host registered: nothing to place on.
                try:
                    await h.vm("early")
                    raise AssertionError("created a vm without any host")
                except Unavailable as exc:
                    assert exc.details["reason"] == "no_healthy_host"

                hosts = {f"{unique}-a": 0.8, f"{unique}-b": 0.2, f"{unique}-c": 0.05}
                for instance_id in hosts:
                    await agent.publish(
                        Register(
                            service="host",
                            instance_id=instance_id,
                            address="10.0.0.1",
                            port=22,
                            ttl_s=10,
                            deregister_after_s=600,
                        )
                    )
                for instance_id, load in hosts.items():
                    # The least loaded one says it is sick: it must not be picked.
                    status = "critical" if instance_id.endswith("-c") else "passing"
                    await agent.publish(
                        Heartbeat(service="host", instance_id=instance_id, load=load, status=status)
                    )

                def loads() -> dict[str, float | None]:
                    entries = discovery.registry.instances
                    return {i: entries[i].load for i in hosts if i in entries}

                await eventually(lambda: loads() == hosts, what="hosts registered with loads")

                vm = await h.vm("web-1")
                b = f"{unique}-b"
                assert (vm["host"], vm["status"]) == (b, "active")

                # b stops sending heartbeats; a keeps going. Past b's TTL it turns critical.
                await clock.advance(6)
                await agent.publish(Heartbeat(service="host", instance_id=f"{unique}-a", load=0.8))
                await eventually(
                    lambda: discovery.registry.instances[f"{unique}-a"].last_heartbeat is not None,
                    what="a's heartbeat",
                )
                await clock.advance_to(T0 + timedelta(seconds=11))

                async def status() -> str:
                    return (await h.resource("web-1"))["status"]

                for _ in range(400):
                    if await status() == "unreachable":
                        break
                    await eventually(lambda: True)
                assert await status() == "unreachable"

                # b comes back.
                await agent.publish(Heartbeat(service="host", instance_id=b, load=0.2))
                for _ in range(400):
                    if await status() == "active":
                        break
                    await eventually(lambda: True)
                assert await status() == "active"

                changes = [
                    (e.previous, e.status, e.reason)
                    for _, e in await h.wait_events(3, "resource.status_changed")
                ]
                assert changes == [
                    ("pending", "active", "placed"),
                    ("active", "unreachable", "host_critical"),
                    ("unreachable", "active", "host_recovered"),
                ]
            finally:
                await agent.close()
    finally:
        await discovery.stop()
        for queue in (f"{unique}.discovery", f"{unique}.discovery.dlq"):
            await discovery_bus.transport.delete_queue(queue)
        await discovery_bus.close()
