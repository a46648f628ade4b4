"""Everything the manager answers and reacts to, in one place.

`RPC_METHODS`: method (routing key on `govbus.rpc`) -> `Method`: the request and reply
models of `schemas.RPC_CONTRACT` and the handler (`commands`).
`EVENT_HANDLERS`: event type (routing key on `govbus.events`) -> handler (`reactions`).
`PATTERNS`: what the worker queue is bound to: exactly the types it handles.
"""

from __future__ import annotations

from bus.rpc import Method
from bus.worker import EventHandler, MethodHandler, method_table
from manager_worker import commands, reactions
from manager_worker.context import Context
from schemas import (
    RPC_CONTRACT,
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatusChanged,
    ResourceObserved,
)

RPC_METHODS: dict[str, Method[MethodHandler[Context]]] = method_table(
    RPC_CONTRACT,
    {
        "manager.resources": commands.list_resources,
        "manager.resource": commands.get_resource,
        "manager.create": commands.create,
        "manager.update": commands.update,
        "manager.delete": commands.delete,
    },
)

EVENT_HANDLERS: dict[str, EventHandler[Context]] = {
    InstanceStatusChanged.TYPE: reactions.on_status_changed,
    InstanceExpired.TYPE: reactions.on_expired,
    InstanceDeregistered.TYPE: reactions.on_deregistered,
    InstanceRegistered.TYPE: reactions.on_registered,
    ResourceObserved.TYPE: reactions.on_observed,
}

PATTERNS = list(EVENT_HANDLERS)
