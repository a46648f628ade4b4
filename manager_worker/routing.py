"""Everything the manager answers and reacts to, in one place.

`RPC_METHODS`: method (routing key on `govbus.rpc`) -> (request model, handler).
`EVENT_HANDLERS`: event type (routing key on `govbus.events`) -> handler. The worker queue is
bound to exactly these types.
"""

from __future__ import annotations

from manager_worker import commands, reactions
from manager_worker.context import EventHandler, RpcHandler
from schemas import (
    CreateResourceRequest,
    DeleteResourceRequest,
    InstanceDeregistered,
    InstanceExpired,
    InstanceRegistered,
    InstanceStatusChanged,
    Request,
    ResourceObserved,
    ResourceRequest,
    ResourcesRequest,
    UpdateResourceRequest,
)

RPC_METHODS: dict[str, tuple[type[Request], RpcHandler]] = {
    "manager.resources": (ResourcesRequest, commands.list_resources),
    "manager.resource": (ResourceRequest, commands.get_resource),
    "manager.create": (CreateResourceRequest, commands.create),
    "manager.update": (UpdateResourceRequest, commands.update),
    "manager.delete": (DeleteResourceRequest, commands.delete),
}

EVENT_HANDLERS: dict[str, EventHandler] = {
    InstanceStatusChanged.TYPE: reactions.on_status_changed,
    InstanceExpired.TYPE: reactions.on_expired,
    InstanceDeregistered.TYPE: reactions.on_deregistered,
    InstanceRegistered.TYPE: reactions.on_registered,
    ResourceObserved.TYPE: reactions.on_observed,
}
