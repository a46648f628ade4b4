"""Join the bus from a plain Flask (WSGI) app: register, heartbeat, deregister, query.

>>> app = Flask(__name__)
>>> agent = GovbusFlask(app, service="hello", port=5000)   # registers now
>>> agent.call("manager.resources", {"limit": 10})          # a bus query, synchronously

The bus lives on an asyncio loop in a daemon thread of its own; Flask's threads hand work to
it and wait for the answer. The instance is kept registered by a `bus.agent.ServiceAgent`
(heartbeats every third of the TTL, registering again if the registry forgot it); at
interpreter exit, on SIGTERM (or `close()`) it drains, deregisters, and the connection closes.

SIGTERM is what process managers, `docker stop` and Kubernetes send, and by default it ends the
process before `atexit` runs. Built in the main thread, the extension therefore takes SIGTERM:
it deregisters, then calls the handler the app (or its server, e.g. gunicorn's worker) had
installed, or, with none, lets the process die of SIGTERM as before (`bus._sigterm`).
`stop_on_sigterm=False` leaves SIGTERM alone.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import socket
import threading
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from bus import _sigterm
from bus.agent import Check, ServiceAgent
from bus.client import Bus
from bus.errors import BusError
from bus.settings import load_settings
from schemas.registry import Register

log = logging.getLogger(__name__)
T = TypeVar("T")

EXTENSION = "govbus"


class GovbusFlask:
    """A Flask extension that keeps one service instance registered on the bus."""

    def __init__(
        self,
        app: Any = None,
        *,
        service: str,
        port: int,
        address: str | None = None,
        instance_id: str | None = None,
        url: str | None = None,
        tags: list[str] | None = None,
        meta: Mapping[str, str] | None = None,
        ttl_s: float = 30.0,
        timeout_s: float = 5.0,
        check: Check | None = None,
        stop_on_sigterm: bool = True,
    ) -> None:
        self.url = url or load_settings().bus_url(embedded=False)
        address = address or socket.gethostname()
        self.registration = Register(
            service=service,
            instance_id=instance_id or f"{service}-{uuid.uuid4().hex[:8]}",
            address=address,
            port=port,
            tags=tags or [],
            meta=dict(meta or {}),
            ttl_s=ttl_s,
        )
        self.timeout_s = timeout_s
        self.check = check
        self.stop_on_sigterm = stop_on_sigterm
        self._unhook: _sigterm.Unhook | None = None
        self.agent: ServiceAgent | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="govbus", daemon=True)
        self._bus: Bus | None = None
        self._closed = False
        if app is not None:
            self.init_app(app)

    @property
    def instance_id(self) -> str:
        return self.registration.instance_id

    def init_app(self, app: Any) -> None:
        """Connect, register, start heartbeating; raises `BusError` if the broker is down."""
        app.extensions[EXTENSION] = self
        self._thread.start()
        self._run(self._start())
        atexit.register(self.close)
        if self.stop_on_sigterm:
            self._unhook = _sigterm.on_sigterm(self.close)

    async def _start(self) -> None:
        self._bus = Bus(self.url, source=f"govbus/flask/{self.registration.service}")
        await self._bus.start()
        # SIGTERM is taken in the app's main thread (`init_app`), not on this loop's thread.
        self.agent = ServiceAgent(
            self._bus, self.registration, check=self.check, stop_on_sigterm=False
        )
        await self.agent.start()

    @property
    def heartbeats(self) -> int:
        return self.agent.heartbeats if self.agent is not None else 0

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout if timeout is not None else self.timeout_s + 1.0)

    def call(
        self,
        method: str,
        params: BaseModel | Mapping[str, Any] | None = None,
        *,
        reply: type[BaseModel] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """A bus query from a Flask view: blocks until the answer (raises the typed `RpcError`)."""
        if self._bus is None or self._closed:
            raise RuntimeError("GovbusFlask is not connected")
        timeout = timeout or self.timeout_s
        return self._run(
            self._bus.rpc.call(method, params, reply=reply, timeout=timeout), timeout + 1.0
        )

    def publish(self, event: BaseModel) -> str:
        """Publish an event (confirmed) from a Flask view; returns its id."""
        if self._bus is None or self._closed:
            raise RuntimeError("GovbusFlask is not connected")
        return self._run(self._bus.publish(event))

    def close(self) -> None:
        """Deregister, close the connection and stop the thread (idempotent)."""
        if self._closed or not self._thread.is_alive():
            return
        self._closed = True
        atexit.unregister(self.close)
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        try:
            self._run(self._stop())
        except (BusError, TimeoutError) as exc:
            log.warning("deregistering %s failed: %s", self.instance_id, exc)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5.0)
            if not self._thread.is_alive():
                self._loop.close()

    async def _stop(self) -> None:
        if self._bus is None:
            return
        try:
            if self.agent is not None:
                await self.agent.stop()
        finally:
            await self._bus.close()
