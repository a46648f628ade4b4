"""A three-node RabbitMQ cluster loses the node every component is connected to (SIGKILL).

`govbus discovery` (SQLite), two `govbus manager`s competing on one PostgreSQL database and
`govbus edge` run as processes against the node list (`GOVBUS_URL=a,b,c`, node a first, so all
of them sit on a). A client on node b keeps publishing registrations, heartbeats and
`resource.observed` reports (each observed report makes a manager publish one
`resource.drift`), retrying every unconfirmed publish with the same event id. Node a is killed
with SIGKILL mid-load; then it is started again and must rejoin.

Figures, as the rest of the fault suite reports them: lost 0 (every confirmed registration is in
the registry the edge answers from; every confirmed report is in the managers' inbox),
duplicated effects 0 (one drift per report, across both managers), consumers back on the
survivors, time to recover (kill -> a registration made after it answered through the edge).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from bus import Bus, BusError
from bus.message import Delivery
from schemas import Heartbeat, ObservedResource, Register, ResourceObserved
from tests._edge_stack import SECRET, bearer
from tests._rabbit_cluster import PrivateCluster
from tests._stores import pg_database
from tests._wait import eventually
from tests.faults._harness import Ledger

pytestmark = [pytest.mark.faults, pytest.mark.postgres, pytest.mark.timeout(240)]

GOVBUS = str(Path(sys.executable).with_name("govbus"))
SERVICE = "cluster-web"
RECOVER_TARGET_S = 10.0
WORKER_QUEUES = ("govbus.discovery", "govbus.manager")
EXPECTED_CONSUMERS = {"govbus.discovery": 1, "govbus.manager": 2}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Components:
    """The govbus processes of the run, with their logs kept for a failure message."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str]) -> None:
        with (self.tmp / f"{name}.log").open("wb") as log:  # the child keeps its own copy
            self.procs[name] = subprocess.Popen(
                [GOVBUS, *args], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{self.log(name)}"

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def publish_until_confirmed(bus: Bus, event: object, event_id: str, ledger: Ledger) -> None:
    """At-least-once publishing: the same id again until the broker confirms it."""
    deadline = time.monotonic() + 60
    while True:
        ledger.attempts += 1
        try:
            await bus.publish(event, event_id=event_id)  # type: ignore[arg-type]
        except BusError:
            assert time.monotonic() < deadline, f"{event_id} never confirmed"
            await asyncio.sleep(0.1)  # the client is failing over; try again
            continue
        ledger.confirmed.add(event_id)
        CONFIRMED_AT[event_id] = time.monotonic()
        ledger.confirmed_at.append(time.monotonic())
        return


CONFIRMED_AT: dict[str, float] = {}
KILLED_AT: list[float] = []


def missing(ledger: Ledger, seen: dict[str, set[str]]) -> str:
    gone = sorted(ledger.confirmed - set(seen))
    offsets = [round(CONFIRMED_AT[i] - KILLED_AT[0], 2) for i in gone if i in CONFIRMED_AT]
    return f"{len(gone)} missing, confirmed at (s from the kill) {offsets[:30]}"


async def listed(http: httpx.AsyncClient) -> set[str]:
    response = await http.get(f"/v1/services/{SERVICE}")
    if response.status_code == 404:
        return set()
    response.raise_for_status()
    return {i["instance_id"] for i in response.json()["instances"]}


def members(node: object, queue: str) -> int:
    out = node.rabbitmqctl(  # type: ignore[attr-defined]
        "list_queues", "name", "members", "--formatter", "json"
    )
    for row in json.loads(out):
        if row["name"] == queue:
            return len(row["members"])
    raise AssertionError(f"queue {queue} not found")


async def test_losing_a_node_of_three_loses_nothing_and_the_components_move_on(tmp_path, unique):
    cluster = PrivateCluster(3)
    components = Components(tmp_path)
    registrations = Ledger("cluster: registrations through discovery")
    reports = Ledger("cluster: resource.observed through two managers on PostgreSQL")
    try:
        await asyncio.to_thread(cluster.start)
        a, b, c = cluster.nodes
        async with pg_database(unique) as pg_url:
            port = free_port()
            clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
            env = {**clean, "GOVBUS_URL": cluster.url, "GOVBUS_AUTH_SECRET": SECRET}
            components.start(
                "discovery", ["discovery", "--db", f"sqlite+aiosqlite:///{tmp_path}/d.db"], env
            )
            components.start("manager-1", ["manager", "--db", pg_url], env)
            components.start("manager-2", ["manager", "--db", pg_url], env)
            components.start("edge", ["edge", "--http", f"127.0.0.1:{port}"], env)

            survivors_first = ",".join(n.url for n in (b, c, a))
            client = Bus(survivors_first, source="cluster-test")
            await client.start()
            drifts: set[str] = set()  # drift event ids
            drift_at: dict[str, float] = {}  # host -> when its drift arrived
            registered: dict[str, set[str]] = {}  # instance id -> its registered event ids

            def on_event(delivery: Delivery) -> None:
                message = delivery.message
                if message.type == "resource.drift":
                    drifts.add(str(message.message_id))
                    drift_at.setdefault(json.loads(message.body)["host"], time.monotonic())
                else:
                    iid = json.loads(message.body)["instance"]["instance_id"]
                    registered.setdefault(iid, set()).add(str(message.message_id))

            await client.tap(["resource.drift", "registry.instance.registered"], on_event)
            http = httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", headers=bearer(), timeout=5
            )
            try:

                async def edge_ready() -> bool:
                    components.alive()
                    with contextlib.suppress(httpx.HTTPError):
                        r1 = await http.get("/v1/services")
                        r2 = await http.get("/v1/resources")
                        return r1.status_code == 200 and r2.status_code == 200
                    return False

                await eventually(edge_ready, timeout=60, what="edge, discovery and managers")
                for queue in ("govbus.discovery", "govbus.manager", "govbus.log"):
                    assert members(b, queue) == 3, f"{queue} is not on every node"

                seq = 0
                stop = asyncio.Event()

                async def load() -> None:
                    nonlocal seq
                    while not stop.is_set():
                        seq += 1
                        iid = f"{unique}-{seq:05d}"
                        register = Register(
                            service=SERVICE, instance_id=iid, address="10.0.0.1", port=8000
                        )
                        registrations.sent.add(iid)
                        await publish_until_confirmed(client, register, iid, registrations)
                        with contextlib.suppress(BusError):
                            await client.publish(Heartbeat(service=SERVICE, instance_id=iid))
                        report_id = f"{unique}-obs-{seq:05d}"
                        observed = ResourceObserved(
                            host=f"{unique}-host-{seq:05d}",
                            resources=[ObservedResource(kind="vm", name="stray", status="active")],
                        )
                        reports.sent.add(report_id)
                        await publish_until_confirmed(client, observed, report_id, reports)
                        await asyncio.sleep(0.01)  # pacing: ~60 registrations and reports a s

                loader = asyncio.create_task(load())
                await eventually(lambda: seq >= 100, timeout=30, what="load under way")
                await eventually(
                    lambda: listed(http), timeout=10, what="registrations through the edge"
                )

                # -- the fault: the node everyone is on dies --
                killed_at = time.monotonic()
                KILLED_AT.append(killed_at)
                await asyncio.to_thread(a.kill)
                probe = f"{unique}-probe"
                await publish_until_confirmed(
                    client,
                    Register(service=SERVICE, instance_id=probe, address="10.0.0.2", port=9),
                    probe,
                    registrations,
                )

                async def probe_listed() -> bool:
                    with contextlib.suppress(httpx.HTTPError):
                        return probe in await listed(http)
                    return False

                await eventually(probe_listed, timeout=30, what="a registration after the kill")
                recovered = time.monotonic() - killed_at
                registrations.recover_s.append(round(recovered, 3))
                await eventually(lambda: seq >= 100 + 200, timeout=60, what="load after the kill")
                stop.set()
                await loader

                # -- the figures --
                async def all_listed() -> bool:
                    return registrations.confirmed <= await listed(http)

                await eventually(all_listed, timeout=30, what="every confirmed registration")
                registrations.deliveries = sorted(registrations.confirmed & await listed(http))
                # An effect is a registration's `registry.instance.registered`: one event per
                # instance, whatever was redelivered; a second application would show as a
                # second event id for the same instance.
                await eventually(
                    lambda: registrations.confirmed <= set(registered),
                    timeout=30,
                    what=lambda: f"registered events: {missing(registrations, registered)}",
                )
                ours = {i: ids for i, ids in registered.items() if i in registrations.confirmed}
                registrations.effects = sum(len(ids) for ids in ours.values())
                registrations.effect_ids = set(ours)

                dsn = pg_url.replace("postgresql+asyncpg://", "postgresql://")

                async def manager_inbox() -> list[str]:
                    conn = await asyncpg.connect(dsn)
                    try:
                        rows = await conn.fetch(
                            "SELECT event_id FROM govbus_inbox WHERE event_id LIKE $1",
                            f"{unique}-obs-%",
                        )
                    finally:
                        await conn.close()
                    return [r["event_id"] for r in rows]

                async def all_applied() -> bool:
                    return reports.confirmed <= set(await manager_inbox())

                await eventually(all_applied, timeout=30, what="every confirmed report applied")
                inbox = await manager_inbox()
                reports.deliveries = inbox
                await eventually(
                    lambda: len(drifts) >= len(reports.confirmed),
                    timeout=30,
                    what=lambda: f"drifts: {len(drifts)} of {len(reports.confirmed)}",
                )
                # An effect is a report's drift: its id derives from the report's, so however
                # often it is redelivered or republished, a report applied once gives one id.
                reports.effects = len(drifts)
                reports.effect_ids = set(inbox)
                # the managers' recovery: kill -> the drift of the first report made after it
                first = min(
                    (i for i in reports.confirmed if CONFIRMED_AT[i] > killed_at),
                    key=CONFIRMED_AT.__getitem__,
                )
                host = first.replace("-obs-", "-host-")
                reports.recover_s.append(round(drift_at[host] - killed_at, 3))
                on_survivors = cluster.consumers(b, not_on=a)
                consumers = {q: on_survivors.get(q, 0) for q in WORKER_QUEUES}
                registrations.extra.update(
                    recover_target_s=RECOVER_TARGET_S, consumers_after=consumers
                )

                # -- the node comes back and rejoins --
                await asyncio.to_thread(a.start)
                running = await asyncio.to_thread(cluster.wait_running, 3, b)
                registrations.extra["rejoined"] = len(running) == 3
                after = f"{unique}-after-rejoin"
                await publish_until_confirmed(
                    client,
                    Register(service=SERVICE, instance_id=after, address="10.0.0.3", port=9),
                    after,
                    Ledger("after the rejoin"),
                )
                await eventually(
                    lambda: probe_after(http, after), timeout=30, what="service after rejoin"
                )
                # the lost node's consumers, kept while it was away, are gone now it is back
                await eventually(
                    lambda: (
                        {q: cluster.consumers(b).get(q, 0) for q in WORKER_QUEUES}
                        == EXPECTED_CONSUMERS
                    ),
                    timeout=30,
                    what=lambda: f"consumers after the rejoin: {cluster.consumers(b)}",
                )
                components.alive()
            finally:
                await http.aclose()
                await client.close()
                components.stop()
    finally:
        await asyncio.to_thread(cluster.stop)

    registrations.assert_safe()
    reports.assert_safe()
    assert consumers == EXPECTED_CONSUMERS
    assert recovered < RECOVER_TARGET_S, f"took {recovered:.1f} s to recover"
    assert reports.recover_s[0] < RECOVER_TARGET_S, f"managers took {reports.recover_s[0]} s"
    assert len(running) == 3, f"node a did not rejoin: {running}"


async def probe_after(http: httpx.AsyncClient, iid: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return iid in await listed(http)
    return False
