"""Everything the discovery worker answers and reacts to, in one place.

`RPC_METHODS`: method (routing key on `govbus.rpc`) -> `Method`: the request and reply
models of `schemas.RPC_CONTRACT` and the handler (`queries`).
`EVENT_HANDLERS`: event type (routing key on `govbus.events`) -> handler (`handlers`).
`PATTERNS`: what the worker queue is bound to; `resource.*` types it has no handler for
(observed, drift) are acknowledged unread.
"""

from __future__ import annotations

from bus.rpc import Method
from bus.worker import EventHandler, MethodHandler, method_table
from schemas import (
    RPC_CONTRACT,
    CheckResult,
    Deregister,
    Drain,
    Heartbeat,
    Heartbeats,
    Register,
    ResourceCreated,
    ResourceDeleted,
    ResourceStatusChanged,
    ResourceUpdated,
)

from . import handlers, queries
from .context import Context

RPC_METHODS: dict[str, Method[MethodHandler[Context]]] = method_table(
    RPC_CONTRACT,
    {
        "discovery.services": queries.services,
        "discovery.service": queries.service,
        "discovery.instance": queries.instance,
        "discovery.pick": queries.pick,
        "discovery.state": queries.state,
    },
)

EVENT_HANDLERS: dict[str, EventHandler[Context]] = {
    Register.TYPE: handlers.register,
    Heartbeat.TYPE: handlers.heartbeat,
    Heartbeats.TYPE: handlers.heartbeats,
    Deregister.TYPE: handlers.deregister,
    Drain.TYPE: handlers.drain,
    CheckResult.TYPE: handlers.check,
    ResourceCreated.TYPE: handlers.resource,
    ResourceUpdated.TYPE: handlers.resource,
    ResourceStatusChanged.TYPE: handlers.resource,
    ResourceDeleted.TYPE: handlers.resource,
}

PATTERNS = [
    Register.TYPE,
    Heartbeat.TYPE,
    Heartbeats.TYPE,
    Deregister.TYPE,
    Drain.TYPE,
    CheckResult.TYPE,
    "resource.*",
]
