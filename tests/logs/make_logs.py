"""Writes the example logs in this directory: `python -m tests.logs.make_logs`.

Each log is a session as `govbus record` would have taken it: the inputs services publish and
the resource commands' events the manager published (`source: govbus/manager`). Ids are uuid5
of the log name and position, times are fixed, so the files are the same on every run.
Events the workers derive (status changes, expiry) are left out: replay regenerates them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bus.eventlog import LogEvent, write_log

HERE = Path(__file__).parent
T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
NS = uuid.UUID("0b4f7a52-3c1e-4f6a-9d8e-5a2b7c9e1f00")


class Session:
    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[LogEvent] = []

    def add(self, at: float, event_type: str, data: dict[str, Any], source: str = "agent") -> None:
        event_id = str(uuid.uuid5(NS, f"{self.name}/{len(self.events)}"))
        time = T0 + timedelta(seconds=at)
        self.events.append(LogEvent(event_id, event_type, source, time, data))

    def register(self, at: float, service: str, instance: str, port: int, **extra: Any) -> None:
        data = {"service": service, "instance_id": instance, "address": "10.0.0.1", "port": port}
        self.add(at, "registry.register", {**data, **extra}, source=service)

    def heartbeat(self, at: float, service: str, instance: str, **extra: Any) -> None:
        data = {"service": service, "instance_id": instance, **extra}
        self.add(at, "registry.heartbeat", data, source=service)

    def resource(self, at: float, event_type: str, resource: dict[str, Any], **extra: Any) -> None:
        data = {"resource": resource, "version": resource["version"], **extra}
        self.add(at, event_type, data, source="govbus/manager")

    def write(self) -> None:
        self.events.sort(key=lambda e: e.time)
        write_log(HERE / f"{self.name}.jsonl", self.events)


def every(start: float, stop: float, step: float) -> Iterator[float]:
    at = start
    while at < stop:
        yield round(at, 3)
        at += step


def registrations() -> Session:
    """Three instances of two services register and heartbeat; one reports `warning`."""
    s = Session("registrations")
    s.register(0.0, "web", "web-1", 8080, tags=["blue"], ttl_s=10)
    s.register(0.5, "web", "web-2", 8081, tags=["green"], ttl_s=10, weight=3)
    s.register(1.0, "api", "api-1", 9000, meta={"zone": "a"}, ttl_s=10)
    for at in every(2.0, 20.0, 3.0):
        s.heartbeat(at, "web", "web-1", load=0.2)
        s.heartbeat(at + 0.1, "web", "web-2", load=0.7)
        s.heartbeat(at + 0.2, "api", "api-1", status="warning" if at > 10 else "passing")
    return s


def expiry() -> Session:
    """web-2 falls silent after 2.52 s: critical at 7.52 s (ttl 5 s), expired 10 s later."""
    s = Session("expiry")
    for i, name in enumerate(("web-1", "web-2", "web-3")):
        s.register(i * 0.1, "web", name, 8080 + i, ttl_s=5, deregister_after_s=10)
    for at in every(1.0, 30.0, 1.5):
        s.heartbeat(at, "web", "web-1")
        s.heartbeat(at + 0.05, "web", "web-3")
        if at < 4.0:
            s.heartbeat(at + 0.02, "web", "web-2")
    return s


def drain() -> Session:
    """api-2 is drained (stays listed, never picked), then api-3 deregisters."""
    s = Session("drain")
    for i, name in enumerate(("api-1", "api-2", "api-3")):
        s.register(i * 0.1, "api", name, 9000 + i, ttl_s=30)
    for at in every(1.0, 12.0, 2.0):
        for name in ("api-1", "api-2", "api-3"):
            s.heartbeat(at, "api", name)
    s.add(5.0, "registry.drain", {"service": "api", "instance_id": "api-2"}, source="api")
    s.add(9.0, "registry.deregister", {"service": "api", "instance_id": "api-3"}, source="api")
    return s


def resources() -> Session:
    """Two hosts; a network, a VM placed on host-1 and a volume attached to it; the VM is
    resized; host-1 falls silent at 6 s (critical at 14 s: its VM and volume go unreachable)."""
    s = Session("resources")
    s.register(0.0, "host", "host-1", 7000, ttl_s=8, deregister_after_s=600)
    s.register(0.1, "host", "host-2", 7001, ttl_s=8, deregister_after_s=600)
    for at in every(1.0, 20.0, 2.0):
        if at < 6.0:
            s.heartbeat(at, "host", "host-1", load=0.1)
        s.heartbeat(at + 0.01, "host", "host-2", load=0.9)
    rid = [str(uuid.uuid5(NS, f"resources/r{i}")) for i in range(3)]

    def stamp(at: float) -> str:
        return (T0 + timedelta(seconds=at)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    net = {
        "kind": "network", "name": "net-1", "labels": {"env": "prod"}, "cidr": "10.1.0.0/24",
        "id": rid[0], "status": "active", "host": None, "version": 1,
        "created_at": stamp(2.5), "updated_at": stamp(2.5),
    }  # fmt: skip
    s.resource(2.5, "resource.created", net)
    vm = {
        "kind": "vm", "name": "vm-1", "labels": {}, "vcpus": 2, "memory_mb": 2048,
        "image": "debian-12", "id": rid[1], "status": "pending", "host": "host-1",
        "version": 1, "created_at": stamp(3.5), "updated_at": stamp(3.5),
    }  # fmt: skip
    s.resource(3.5, "resource.created", vm)
    vol = {
        "kind": "volume", "name": "vol-1", "labels": {}, "size_gb": 20, "attached_to": "vm-1",
        "id": rid[2], "status": "active", "host": "host-1", "version": 1,
        "created_at": stamp(4.2), "updated_at": stamp(4.2),
    }  # fmt: skip
    s.resource(4.2, "resource.created", vol)
    resized = {**vm, "status": "active", "vcpus": 4, "version": 3, "updated_at": stamp(5.0)}
    s.resource(5.0, "resource.updated", resized, changed=["vcpus"])
    s.add(
        7.0,
        "resource.observed",
        {"host": "host-1", "resources": [{"kind": "vm", "name": "vm-1", "status": "active"}]},
        source="host-agent",
    )
    return s


def protection() -> Session:
    """Four of five instances fall silent at once (a network fault, not mass death): expiry
    protection keeps them listed as critical; three come back at 10 s, protection ends, and
    the one still silent is removed after one more TTL."""
    s = Session("protection")
    names = [f"pay-{i}" for i in range(1, 6)]
    for i, name in enumerate(names):
        s.register(i * 0.01, "pay", name, 7000 + i, ttl_s=2, deregister_after_s=3)
    for at in every(0.5, 20.0, 0.5):
        for name in names:
            back = name in ("pay-2", "pay-3", "pay-4") and at >= 10.0
            if name == "pay-1" or at < 2.0 or back:
                s.heartbeat(at, "pay", name)
    return s


def scale_down() -> Session:
    """Seven of ten instances fall silent at once at 60 s (a scale-down, or a lost rack) while
    three keep beating for an hour: protection starts at the first misses, and must end."""
    s = Session("scale_down")
    names = [f"shop-{i}" for i in range(1, 11)]
    for i, name in enumerate(names):
        s.register(i * 0.01, "shop", name, 8000 + i, ttl_s=20, deregister_after_s=60)
    for at in every(9.0, 3600.0, 9.0):
        for name in names:
            if at < 60.0 or name in ("shop-8", "shop-9", "shop-10"):
                s.heartbeat(at, "shop", name)
    return s


def protection_limit() -> Session:
    """All ten instances fall silent at once (the bus itself may be at fault: no evidence
    either way); twenty minutes later a deregistration of an unknown instance moves time on."""
    s = Session("protection_limit")
    names = [f"inv-{i}" for i in range(1, 11)]
    for i, name in enumerate(names):
        s.register(i * 0.01, "inv", name, 8100 + i, ttl_s=20, deregister_after_s=60)
    for at in every(9.0, 30.0, 9.0):
        for name in names:
            s.heartbeat(at, "inv", name)
    s.add(1200.0, "registry.deregister", {"service": "inv", "instance_id": "ghost"}, "inv")
    return s


def checks() -> Session:
    """A database watched by an HTTP and a TCP check (no TTL) and the checker's verdicts:
    critical until its first pass, then warning, a failure, and passing again."""
    s = Session("checks")
    http = {"id": "http", "http": "http://10.0.0.7:8080/health", "interval_s": 5}
    tcp = {"id": "tcp", "tcp": "10.0.0.7:5432", "interval_s": 5}
    s.register(0.0, "db", "db-1", 5432, ttl_s=0, checks=[http, tcp])

    def verdict(at: float, check: str, status: str, output: str) -> None:
        data = {"service": "db", "instance_id": "db-1", "check_id": check}
        s.add(at, "registry.check", {**data, "status": status, "output": output}, "govbus/checker")

    verdict(1.0, "tcp", "passing", "TCP connect 10.0.0.7:5432: success")
    verdict(1.1, "http", "passing", "HTTP GET http://10.0.0.7:8080/health: 200 OK")
    verdict(6.0, "http", "warning", "HTTP GET http://10.0.0.7:8080/health: 429 Too Many Requests")
    verdict(11.0, "tcp", "critical", "TCP connect 10.0.0.7:5432: connection refused")
    verdict(16.0, "tcp", "passing", "TCP connect 10.0.0.7:5432: success")
    verdict(16.5, "http", "passing", "HTTP GET http://10.0.0.7:8080/health: 200 OK")
    return s


def command_race() -> Session:
    """The README tour's ending, timed as it raced live: host-1 is deregistered at 5.00 s and
    its VM deleted at 5.02 s. The delete's request reached the manager before the host's
    deregistration (an event through the discovery worker) did, so the VM was deleted at
    version 2, while still `active`. Replay, going by time, has the manager react to the
    deregistration first (the VM goes `unreachable`, version 3)."""
    s = Session("command_race")
    s.register(0.0, "host", "host-1", 22, ttl_s=60, deregister_after_s=600)
    vm = {
        "kind": "vm", "name": "web-1", "labels": {}, "vcpus": 2, "memory_mb": 2048,
        "image": "debian-12", "id": str(uuid.uuid5(NS, "command_race/vm")), "status": "pending",
        "host": "host-1", "version": 1, "created_at": "2026-01-01T12:00:01.000000Z",
        "updated_at": "2026-01-01T12:00:01.000000Z",
    }  # fmt: skip
    s.resource(1.0, "resource.created", vm)
    s.add(5.0, "registry.deregister", {"service": "host", "instance_id": "host-1"}, "host")
    deleted = {**vm, "status": "active", "version": 3, "updated_at": "2026-01-01T12:00:05.020000Z"}
    s.resource(5.02, "resource.deleted", deleted)
    return s


def main() -> None:
    makers = (registrations, expiry, drain, resources, protection)
    for make in (*makers, scale_down, protection_limit, checks, command_race):
        make().write()


if __name__ == "__main__":
    main()
