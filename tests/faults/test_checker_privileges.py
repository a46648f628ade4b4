"""The compose user `checker` (compose/rabbitmq/definitions.json) can do a checker's work and
no more: on a private node with the definitions, a checker running as `checker` registers
itself, reads the registry and publishes `registry.check`; it may not publish the discovery
worker's events."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import aio_pika
import aiormq
import pytest

from bus import Bus
from bus.errors import BusError
from bus.settings import load_settings
from govbus import components
from schemas import Register
from tests._rabbit_node import PrivateRabbit
from tests._targets import Targets
from tests._wait import eventually

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

PASSWORDS = {"admin": "admin-secret", "discovery": "discovery-secret", "checker": "checker-secret"}


def url(node: PrivateRabbit, user: str) -> str:
    return f"amqp://{user}:{PASSWORDS[user]}@127.0.0.1:{node.port}/"


async def test_the_checker_user_checks_and_may_not_speak_for_discovery(compose_node, tmp_path):
    async with contextlib.AsyncExitStack() as stack, Targets() as targets:
        stored = load_settings(db=f"sqlite+aiosqlite:///{tmp_path}/d.db")
        for name in ("discovery", "checker"):
            await stack.enter_async_context(
                components.running_component(
                    components.COMPONENTS[name], url(compose_node, name), stored
                )
            )
        admin = await stack.enter_async_context(Bus(url(compose_node, "admin"), source="ops"))
        port = int(targets.url.rsplit(":", 1)[1])
        await admin.publish(
            Register(
                service="db", instance_id="db-1", address="127.0.0.1", port=port, ttl_s=0,
                checks=[{"tcp": f"127.0.0.1:{port}", "interval_s": 1}],
            )
        )  # fmt: skip

        async def checker_listed() -> bool:
            view = await admin.call("discovery.service", {"name": "govbus-checker"})
            return any(i["status"] == "passing" for i in view["instances"])

        async def db_passing() -> bool:
            view = await admin.call("discovery.instance", {"instance_id": "db-1"})
            return bool(view["instance"]["status"] == "passing")

        await until(checker_listed, "the checker to register as user checker")
        await until(db_passing, "db-1 to pass its TCP check")

        # The checker user may not publish what only the discovery worker publishes.
        connection = await aio_pika.connect(url(compose_node, "checker"))
        try:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("govbus.events", ensure=False)
            forged = aio_pika.Message(
                body=b'{"service": "db", "instance_id": "db-1"}',
                message_id="forged-by-checker",
                type="registry.instance.expired",
            )
            with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
                await exchange.publish(forged, routing_key="registry.instance.expired")
        finally:
            await connection.close()


async def until(predicate: Callable[[], Awaitable[bool]], what: str, timeout: float = 30) -> None:
    """Ask until `predicate()` is true (a bus error counts as not yet)."""

    async def answered() -> bool:
        with contextlib.suppress(BusError):
            return await predicate()
        return False

    await eventually(answered, timeout=timeout, interval=0.1, what=what)
