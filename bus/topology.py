"""The broker topology SPEC names: exchanges, worker queues, dead-letter queues, the log stream.

Declared once at start (idempotently) and re-declared after a reconnection by the transport;
never per message.
"""

from __future__ import annotations

from bus.transport.base import QueueSpec, Transport

EVENTS = "govbus.events"
RPC = "govbus.rpc"
DLX = "govbus.dlx"
LOG = "govbus.log"

# A message a worker fails to settle this many times (crashes, lost channels) is dead-lettered
# by the broker itself; the consumer's own retries dead-letter earlier, with the reason.
DELIVERY_LIMIT = 5


def worker_queue(name: str, *, delivery_limit: int = DELIVERY_LIMIT) -> QueueSpec:
    """The durable quorum queue a worker consumes events from, e.g. `govbus.discovery`."""
    return QueueSpec(
        name,
        arguments={
            "x-queue-type": "quorum",
            "x-delivery-limit": delivery_limit,
            "x-dead-letter-exchange": DLX,
            "x-dead-letter-routing-key": name,
        },
    )


def dead_letter_queue(name: str) -> QueueSpec:
    """`<queue>.dlq`, where a worker queue's failed messages end up."""
    return QueueSpec(f"{name}.dlq", arguments={"x-queue-type": "quorum"})


def rpc_queue(service: str) -> QueueSpec:
    """The queue a worker serves requests from; it vanishes with the last worker, so a call
    to a method nobody serves is returned to the caller at once (`NoResponder`)."""
    return QueueSpec(f"govbus.rpc.{service}", durable=False, auto_delete=True)


LOG_STREAM = QueueSpec(LOG, arguments={"x-queue-type": "stream", "x-max-age": "7D"})


async def declare_exchanges(transport: Transport, *, log_stream: bool) -> None:
    """The three exchanges, and on RabbitMQ the `govbus.log` stream bound to every event."""
    await transport.declare_exchange(EVENTS, "topic")
    await transport.declare_exchange(RPC, "direct")
    await transport.declare_exchange(DLX, "topic")
    if log_stream:
        await transport.declare_queue(LOG_STREAM)
        await transport.bind(LOG, EVENTS, "#")


async def declare_worker_queue(transport: Transport, spec: QueueSpec, patterns: list[str]) -> None:
    """A worker queue with its dead-letter queue, bound to `govbus.events` by `patterns`."""
    dlq = dead_letter_queue(spec.name)
    await transport.declare_queue(dlq)
    await transport.bind(dlq.name, DLX, spec.name)
    await transport.declare_queue(spec)
    for pattern in patterns:
        await transport.bind(spec.name, EVENTS, pattern)
