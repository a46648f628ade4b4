"""The components govbus runs, in one typed table: `COMPONENTS`.

`govbus up` runs them all in one process, in the table's order (the edge last, watching the
workers' connections); `govbus discovery`, `govbus manager`, `govbus checker` and `govbus edge`
run one each.
Every component is built the same way, on a connection of its own (`running_component`):
a bus with the component's CloudEvents source, then its factory given a `Launch`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from bus.client import Bus
from bus.errors import ConfigError
from bus.process import running
from bus.settings import Settings
from bus.worker import Worker
from discovery_worker import SOURCE as DISCOVERY_SOURCE
from discovery_worker import DiscoveryConfig
from discovery_worker import bootstrap as discovery_bootstrap
from govbus._preflight import check_store
from govbus.history import HistoryAlongside, edge_history
from health_checker import SOURCE as CHECKER_SOURCE
from health_checker import bootstrap as checker_bootstrap
from http_edge import create_app
from http_edge.dns import check_dns
from http_edge.server import EdgeServer, check_edge, edge_address
from manager_worker import SOURCE as MANAGER_SOURCE
from manager_worker import ManagerConfig
from manager_worker import bootstrap as manager_bootstrap

__all__ = ["COMPONENTS", "EDGE_SOURCE", "Component", "Launch", "running_component"]

EDGE_SOURCE = "govbus/edge"
"""`ce-source` of what the edge publishes (registrations and heartbeats made over HTTP)."""


@dataclass(frozen=True, slots=True)
class Launch:
    """What a component's factory builds it from."""

    bus: Bus
    """Its own connection, connected, with the component's source."""
    settings: Settings
    queue: str | None = None
    """The event queue a worker consumes (`govbus discovery --queue` names another)."""
    peers: tuple[Bus, ...] = ()
    """The connections of the components started before it in this process."""
    stop: asyncio.Event | None = None
    """Set it to stop the whole process (a component that ended on its own)."""


@dataclass(frozen=True, slots=True)
class Component:
    """One thing govbus runs: a worker or the edge."""

    name: str
    """Its command: `govbus <name>`."""
    source: str
    """`ce-source` of every event it publishes."""
    build: Callable[[Launch], Awaitable[Worker]]
    """Builds it, not yet started, on the connection a `Launch` gives."""
    check: Callable[[Settings], None]
    """Raises `ConfigError` for what is wrong with its settings, before anything starts."""
    describe: Callable[[Launch], str]
    """One line saying what runs, once it runs."""
    queue: str | None = field(default=None)
    """Its event queue when none is named (workers)."""


async def _discovery(launch: Launch) -> Worker:
    config = DiscoveryConfig(queue=launch.queue) if launch.queue else DiscoveryConfig()
    return await discovery_bootstrap(bus=launch.bus, db_url=launch.settings.db, config=config)


async def _manager(launch: Launch) -> Worker:
    config = ManagerConfig(queue=launch.queue) if launch.queue else ManagerConfig()
    return await manager_bootstrap(bus=launch.bus, db_url=launch.settings.db, config=config)


async def _edge(launch: Launch) -> Worker:
    history = edge_history(launch.settings.db)
    app = create_app(
        bus=launch.bus,
        settings=launch.settings,
        observe=launch.peers,
        history=history,
        dns=launch.settings.dns_address(embedded=False),  # `govbus up` has set its default
    )
    stop = launch.stop
    server = EdgeServer(app, launch.settings, on_exit=stop.set if stop is not None else None)
    return HistoryAlongside(server, history, launch.bus)


async def _checker(launch: Launch) -> Worker:
    return await checker_bootstrap(bus=launch.bus)


def _check_nothing(settings: Settings) -> None:
    """The checker needs no settings beyond the bus."""


def _check_store(settings: Settings) -> None:
    check_store(settings.db)


def _check_edge(settings: Settings) -> None:
    check_edge(settings)
    dns = settings.dns_address(embedded=False)
    if dns is not None:
        check_dns(dns)
        if _same_port(dns, settings.http):  # each is free alone, but DNS's TCP needs the port
            raise ConfigError(
                f"GOVBUS_DNS: {dns} takes the port of GOVBUS_HTTP ({settings.http}): "
                "DNS answers over TCP too; choose another port"
            )
    check_store(settings.db)  # the history keeps its log there


def _same_port(a: str, b: str) -> bool:
    (host_a, _, port_a), (host_b, _, port_b) = a.rpartition(":"), b.rpartition(":")
    anywhere = {"0.0.0.0", "[::]", "::"}
    return port_a == port_b and (host_a == host_b or bool({host_a, host_b} & anywhere))


def _describe_edge(launch: Launch) -> str:
    dns = launch.settings.dns_address(embedded=False)
    return f"edge on {edge_address(launch.settings)}" + (f"  DNS on {dns}" if dns else "")


COMPONENTS: dict[str, Component] = {
    component.name: component
    for component in (
        Component(
            name="discovery",
            source=DISCOVERY_SOURCE,
            build=_discovery,
            check=_check_store,
            describe=lambda launch: f"discovery worker running (queue {launch.queue})",
            queue=DiscoveryConfig().queue,
        ),
        Component(
            name="manager",
            source=MANAGER_SOURCE,
            build=_manager,
            check=_check_store,
            describe=lambda launch: f"manager worker running (queue {launch.queue})",
            queue=ManagerConfig().queue,
        ),
        Component(
            name="checker",
            source=CHECKER_SOURCE,
            build=_checker,
            check=_check_nothing,
            describe=lambda launch: "health checker running (service govbus-checker)",
        ),
        Component(
            name="edge",
            source=EDGE_SOURCE,
            build=_edge,
            check=_check_edge,
            describe=_describe_edge,
        ),
    )
}
"""Every component, in the order `govbus up` starts them."""


@contextlib.asynccontextmanager
async def running_component(
    component: Component,
    url: str,
    settings: Settings,
    *,
    queue: str | None = None,
    peers: Sequence[Bus] = (),
    stop: asyncio.Event | None = None,
) -> AsyncIterator[tuple[Worker, Launch]]:
    """`component` on a connection of its own to `url`, started; stopped (gracefully) and
    disconnected on leaving. Yields it with the `Launch` it was built from."""
    bus = Bus(url, source=component.source)
    launch = Launch(bus, settings, queue or component.queue, tuple(peers), stop)

    async def build(_: Bus) -> Worker:
        return await component.build(launch)

    async with running(bus, build) as started:
        yield started, launch
