"""The one shape of a govbus worker, and the helpers every worker is wired with.

A worker is an application of the library (the discovery and manager workers are two):

- **Built** by its `bootstrap(*, bus, store=None, db_url=None, clock=None, config=None, ...)`,
  an `async def` that connects nothing and builds real adapters for what is `None`
  (`worker_store` opens the store of `db_url`, the worker then owns and closes it).
- **Run** through the `Worker` protocol: `start()` creates its tables, consumes its queue and
  serves its methods; `stop()` is graceful (no new work, in-flight work finished, what it
  owes written and published, its consumer and server `Bus.unsubscribe`d); `ready` says it is
  consuming and serving on a connected bus.
- **Routed** by two visible tables in its `routing` module: `EVENT_HANDLERS` (event type ->
  `async def h(event, meta, *, ctx)`) and `RPC_METHODS` (method -> `Method`, made by
  `method_table` from the wire contract `schemas.RPC_CONTRACT`, so its request and reply
  models are the contract's; handlers `async def m(request, *, ctx)`).
- **Given its dependencies** as one `Context` dataclass of its own, which `bind_events` and
  `bind_methods` pass to every handler as `ctx` when it starts.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Mapping
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from bus.consumer import Handler
from bus.message import EventMeta
from bus.rpc import Method, RpcHandler
from bus.settings import load_settings
from bus.store import Store, create_engine

C = TypeVar("C")
C_contra = TypeVar("C_contra", contravariant=True)
H = TypeVar("H")


class Worker(Protocol):
    """What runs a worker: `govbus up`, a single-component command, replay, tests."""

    @property
    def ready(self) -> bool:
        """Consuming its queue and serving its methods on a connected bus."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class EventHandler(Protocol[C_contra]):
    """`async def h(event, meta, *, ctx)`: an entry of a worker's `EVENT_HANDLERS`."""

    def __call__(self, event: Any, meta: EventMeta, /, *, ctx: C_contra) -> Awaitable[None]: ...


class MethodHandler(Protocol[C_contra]):
    """`async def m(request, *, ctx)`: the handler of a worker's `Method`."""

    def __call__(self, request: Any, /, *, ctx: C_contra) -> Awaitable[BaseModel]: ...


Contract = Mapping[str, tuple[type[BaseModel], type[BaseModel]]]
"""Method -> (request model, reply model): `schemas.RPC_CONTRACT`'s shape."""


def method_table(contract: Contract, handlers: Mapping[str, H]) -> dict[str, Method[H]]:
    """A worker's `RPC_METHODS`: each method with its handler and the contract's models.

    Raises `ValueError` naming any method the contract does not list.
    """
    unknown = sorted(set(handlers) - set(contract))
    if unknown:
        raise ValueError(f"not in the RPC contract: {', '.join(unknown)}")
    return {
        name: Method(contract[name][0], handler, reply=contract[name][1])
        for name, handler in handlers.items()
    }


def bind_events(table: Mapping[str, EventHandler[C]], ctx: C) -> dict[str, Handler]:
    """The handlers of `table` with `ctx` given, as `Bus.subscribe` calls them."""
    return {event_type: functools.partial(h, ctx=ctx) for event_type, h in table.items()}


def bind_methods(
    table: Mapping[str, Method[MethodHandler[C]]], ctx: C, *, service: str
) -> dict[str, Method[RpcHandler]]:
    """The methods of `table` with `ctx` given, as `Bus.serve` serves them.

    Each is served as `<service>.<name after the first dot>` (`discovery.pick` as
    `<service>.pick`): a worker serves under its configured service name, which only tests
    on a shared broker change.
    """
    return {
        f"{service}.{name.partition('.')[2]}": Method(
            m.request, functools.partial(m.handler, ctx=ctx), m.reply
        )
        for name, m in table.items()
    }


def worker_store(store: Store | None, db_url: str | None) -> tuple[Store, bool]:
    """The store a worker uses, and whether it owns it (and so closes it on `stop()`):
    `store` as given, else one opened on `db_url`, else on `GOVBUS_DB`."""
    if store is not None:
        return store, False
    return Store(create_engine(db_url or load_settings().db)), True
