"""Check results in the discovery worker's store: a restart keeps each check's status and
output (SQLite and PostgreSQL)."""

from __future__ import annotations

from bus import Bus
from discovery_worker import SOURCE, DiscoveryConfig
from discovery_worker import bootstrap as discovery
from schemas import CheckResult, Heartbeat, Register
from tests._wait import eventually


async def test_a_restart_keeps_what_the_checks_said(memory_url, db_url, unique):
    config = DiscoveryConfig(queue=f"{unique}.discovery", service=f"{unique}.discovery")
    async with Bus(memory_url, source="test") as client:

        async def started():
            bus = Bus(memory_url, source=SOURCE)
            await bus.start()
            worker = await discovery(bus=bus, db_url=db_url, config=config)
            await worker.start()
            return bus, worker

        bus, worker = await started()
        checks = [{"id": "h", "http": "http://10.0.0.7/health"}, {"id": "t", "tcp": "10.0.0.7:1"}]
        await client.publish(
            Register(
                service="db", instance_id=f"{unique}-db", address="10.0.0.7", port=1,
                ttl_s=30, checks=checks,
            )
        )  # fmt: skip
        await client.publish(
            CheckResult(
                service="db", instance_id=f"{unique}-db", check_id="h", status="passing",
                output="HTTP GET http://10.0.0.7/health: 200 OK",
            )
        )  # fmt: skip
        await client.publish(
            CheckResult(service="db", instance_id=f"{unique}-db", check_id="t", status="warning")
        )
        registry = worker.registry
        await eventually(
            lambda: (
                (e := registry.instances.get(f"{unique}-db")) is not None and e.status == "warning"
            )
        )
        flushes = worker.journal.flushes
        await client.publish(Heartbeat(service="db", instance_id=f"{unique}-db"))
        await eventually(lambda: worker.journal.flushes > flushes, timeout=5)
        await worker.stop()
        await bus.close()

        bus, worker = await started()
        try:
            entry = worker.registry.instances[f"{unique}-db"]
            assert entry.status == "warning"
            assert entry.checks is not None
            assert {k: (v.status, v.output) for k, v in entry.checks.items()} == {
                "h": ("passing", "HTTP GET http://10.0.0.7/health: 200 OK"),
                "t": ("warning", ""),
            }
            view = await client.call(
                f"{unique}.discovery.instance", {"instance_id": entry.instance_id}
            )
            assert [c["status"] for c in view["instance"]["checks"]] == ["passing", "warning"]
        finally:
            await worker.stop()
            await bus.close()
