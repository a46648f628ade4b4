"""Agents leave the registry on SIGTERM, as on Ctrl-C: the Flask adapter and `ServiceAgent`.

SIGTERM is what process managers, `docker stop` and Kubernetes send. Real processes, registered
on RabbitMQ (a private vhost) with a discovery worker running here; the test watches the
worker's `registry.instance.*` events.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import pytest

from bus import Bus
from bus.message import Delivery
from bus.settings import load_settings
from bus.topology import EVENTS
from bus.transport import QueueSpec
from govbus.components import COMPONENTS, running_component
from tests._wait import eventually
from tests.e2e._up import free_port

pytestmark = pytest.mark.rabbitmq

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Registry:
    """The discovery worker's `registry.instance.*` events, as (type, instance_id)."""

    events: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, delivery: Delivery) -> None:
        body = json.loads(delivery.message.body)
        instance_id = body.get("instance_id") or body.get("instance", {}).get("instance_id", "")
        self.events.append((delivery.routing_key, instance_id))
        asyncio.get_running_loop().create_task(delivery.ack())

    def ids(self, event_type: str, service_prefix: str = "") -> list[str]:
        kind = f"registry.instance.{event_type}"
        return [i for t, i in self.events if t == kind and i.startswith(service_prefix)]


@asynccontextmanager
async def discovery(url: str, tmp_path: Path) -> AsyncIterator[Registry]:
    """A discovery worker on `url`, and what it says about instances."""
    seen = Registry()
    db = f"sqlite+aiosqlite:///{tmp_path}/discovery.db"
    async with (
        running_component(COMPONENTS["discovery"], url, load_settings(db=db)),
        Bus(url, source="watch") as bus,
    ):
        queue = f"watch-{uuid4().hex[:8]}"
        await bus.transport.declare_queue(QueueSpec(queue, durable=False, exclusive=True))
        await bus.transport.bind(queue, EVENTS, "registry.instance.#")
        await bus.transport.consume(queue, seen, prefetch=100)
        yield seen


def spawn(*args: str, url: str, **env: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GOVBUS_")}
    return subprocess.Popen(
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, "GOVBUS_URL": url, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def finish(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    try:
        out, err = await asyncio.to_thread(proc.communicate, timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


async def registered(seen: Registry, proc: subprocess.Popen[str], prefix: str) -> str:
    """The instance id the process registered (it must still be running)."""

    def one() -> str | None:
        assert proc.poll() is None, proc.communicate()
        ids = seen.ids("registered", prefix)
        return ids[0] if ids else None

    return str(await eventually(one, timeout=20, what=f"{prefix} to register"))


async def test_the_example_flask_app_deregisters_on_sigterm_then_dies_of_it(vhost_url, tmp_path):
    async with discovery(vhost_url, tmp_path) as seen:
        port = free_port()
        proc = spawn("examples/flask_hello/app.py", url=vhost_url, PORT=str(port))
        try:
            instance = await registered(seen, proc, "hello-")
            proc.send_signal(signal.SIGTERM)
            await eventually(
                lambda: instance in seen.ids("deregistered"), what=f"{instance} deregistered"
            )
        finally:
            code, _out, err = await finish(proc)
        # No handler of its own: after deregistering it still ends as SIGTERM ends a process.
        assert code == -signal.SIGTERM, err
        # Drained before it left, as on a Ctrl-C.
        assert instance in seen.ids("status_changed")


async def test_a_flask_apps_own_sigterm_handler_still_runs(vhost_url, tmp_path):
    async with discovery(vhost_url, tmp_path) as seen:
        port = free_port()
        proc = spawn("-m", "tests.e2e._flask_program", str(port), url=vhost_url)
        try:
            instance = await registered(seen, proc, "hello-")
            proc.send_signal(signal.SIGTERM)
            await eventually(
                lambda: instance in seen.ids("deregistered"), what=f"{instance} deregistered"
            )
        finally:
            code, out, err = await finish(proc)
        assert code == 3, err
        assert out.splitlines()[-1] == "app handler ran", out


@pytest.mark.parametrize(
    ("sig", "mode", "lines", "exit_code"),
    [
        # Ctrl-C, the reference: asyncio.run cancels the main task, KeyboardInterrupt follows.
        (signal.SIGINT, "", ["ready", "cancelled", "interrupted"], 130),
        # SIGTERM takes the same path.
        (signal.SIGTERM, "", ["ready", "cancelled", "interrupted"], 130),
        # The program's own SIGTERM handler runs after the agent deregistered.
        (signal.SIGTERM, "handler", ["ready", "app handler ran", "cancelled"], 4),
        # A loop that handles SIGTERM itself is left alone: the program's own shutdown path.
        (signal.SIGTERM, "loop", ["ready", "loop handler ran"], 0),
    ],
    ids=["sigint", "sigterm", "sigterm-own-handler", "sigterm-loop-handler"],
)
async def test_an_asyncio_service_agent_deregisters_on_sigterm_as_on_ctrl_c(
    vhost_url, tmp_path, sig, mode, lines, exit_code
):
    async with discovery(vhost_url, tmp_path) as seen:
        instance = f"agentprog-{uuid4().hex[:8]}"
        args = ["-m", "tests.e2e._agent_program", vhost_url, instance, *([mode] if mode else [])]
        proc = spawn(*args, url=vhost_url)
        try:
            await registered(seen, proc, instance)
            proc.send_signal(sig)
            await eventually(
                lambda: instance in seen.ids("deregistered"), what=f"{instance} deregistered"
            )
        finally:
            code, out, err = await finish(proc)
        assert (code, out.splitlines()) == (exit_code, lines), err
