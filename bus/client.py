"""`Bus`: one connection's publisher, RPC client, consumers and servers, opened and closed
together."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel

from bus.clock import Clock, WallClock
from bus.consumer import ConsumerPolicy, EventConsumer, Handler
from bus.publisher import Publisher
from bus.rpc import Method, RpcClient, RpcHandler, RpcServer
from bus.tap import Tap, TapHandler
from bus.topology import declare_exchanges, declare_worker_queue, worker_queue
from bus.transport import Transport, create_transport
from schemas import EVENT_TYPES

log = logging.getLogger(__name__)


class Bus:
    """A connection to the bus and what runs over it.

    >>> async with Bus("memory://", source="web") as bus:
    ...     await bus.publish(
    ...         Register(service="web", instance_id="web-1", address="127.0.0.1", port=80)
    ...     )
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        source: str,
        transport: Transport | None = None,
        clock: Clock | None = None,
        rpc_timeout: float = 5.0,
    ) -> None:
        if transport is None:
            if url is None:
                raise ValueError("Bus needs a url or a transport")
            transport = create_transport(url, name=source)
        self.transport = transport
        self.source = source
        self.clock: Clock = clock or WallClock()
        self.publisher = Publisher(transport, source=source, clock=self.clock)
        self.rpc = RpcClient(transport, default_timeout=rpc_timeout)
        self.consumers: list[EventConsumer] = []
        self.servers: list[RpcServer] = []
        self.taps: set[Tap] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Connect and declare the exchanges (and the log stream, where the broker keeps one:
        `Transport.keeps_log`)."""
        await self.transport.connect()
        await declare_exchanges(self.transport, log_stream=self.transport.keeps_log)

    @property
    def ready(self) -> bool:
        """Connected, with every consumer and server registered."""
        return (
            self.transport.is_connected
            and all(c.ready for c in self.consumers)
            and all(s.ready for s in self.servers)
        )

    async def publish(self, event: BaseModel, **kwargs: Any) -> str:
        return await self.publisher.publish(event, **kwargs)

    async def call(
        self, method: str, params: BaseModel | Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        return await self.rpc.call(method, params, **kwargs)

    async def subscribe(
        self,
        queue: str,
        patterns: list[str],
        handlers: Mapping[str, Handler],
        models: Mapping[str, type[BaseModel]] | None = None,
        *,
        policy: ConsumerPolicy | None = None,
    ) -> EventConsumer:
        """Declare the worker queue `queue` (quorum, with its DLQ), bind it to `patterns`, and
        consume it: each event goes to the handler of its type, validated into its model
        (`models`, by default the wire contract's catalog `schemas.EVENT_TYPES`)."""
        await declare_worker_queue(self.transport, worker_queue(queue), patterns)
        models = EVENT_TYPES if models is None else models
        consumer = EventConsumer(self.transport, queue, handlers, models, policy=policy)
        await consumer.start()
        self.consumers.append(consumer)
        return consumer

    async def serve(
        self,
        service: str,
        methods: Mapping[str, Method[RpcHandler]],
        *,
        prefetch: int = 64,
        dead_letter: str | None = None,
    ) -> RpcServer:
        """Serve `methods` from `govbus.rpc.<service>`. Requests that did not come through
        `govbus.rpc` are never answered: dead-lettered into `<dead_letter>.dlq` (a worker
        names its event queue) or, without it, dropped with a warning."""
        server = RpcServer(
            self.transport, service, methods, prefetch=prefetch, dead_letter=dead_letter
        )
        await server.start()
        self.servers.append(server)
        return server

    async def unsubscribe(self, handle: EventConsumer | RpcServer) -> None:
        """Stop one consumer or server of this bus (gracefully: in-flight work finishes) and
        forget it, so `ready` and `close()` no longer count it. Stopping one already stopped
        does nothing."""
        if isinstance(handle, EventConsumer):
            if handle in self.consumers:
                self.consumers.remove(handle)
        elif handle in self.servers:
            self.servers.remove(handle)
        await handle.stop()

    async def tap(
        self,
        patterns: Sequence[str],
        handler: TapHandler,
        *,
        prefix: str = "govbus.tap",
        max_length: int | None = None,
        prefetch: int = 256,
        stream: str | None = None,
        offset: str | int = "first",
    ) -> Tap:
        """Watch events without being a worker: `handler(delivery)` for each event matching
        `patterns` (topic patterns on `govbus.events`), in order, acknowledged by the tap.

        The queue is private (exclusive, auto-deleted, non-durable), named `<prefix>.<random>`
        (a broker user needs permissions on its prefix), at most `max_length` deep if given
        (the oldest go first). `stream=` reads that stream queue (`govbus.log`) from `offset`
        instead. Messages that did not come through `govbus.events` are dropped (see
        `bus.tap`). Close it with `await tap.close()`, or it closes with the bus.
        """
        tap = Tap(
            self.transport,
            patterns,
            handler,
            prefix=prefix,
            max_length=max_length,
            prefetch=prefetch,
            stream=stream,
            offset=offset,
        )
        self.taps.add(tap)
        tap.on_close(lambda: self.taps.discard(tap))
        try:
            await tap.start()
        except BaseException:
            await tap.close()
            raise
        return tap

    async def close(self) -> None:
        """Graceful: stop taps, servers and consumers (finishing in-flight work), then
        disconnect."""
        for tap in list(self.taps):
            await tap.close()
        for server in reversed(self.servers):
            await server.stop()
        for consumer in reversed(self.consumers):
            await consumer.stop()
        self.servers.clear()
        self.consumers.clear()
        await self.transport.close()
