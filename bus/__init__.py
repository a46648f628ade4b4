"""govbus: typed publish/subscribe and request/reply over RabbitMQ or the embedded broker."""

from bus.client import Bus
from bus.clock import Clock, VirtualClock, WallClock
from bus.consumer import ConsumerPolicy, EventConsumer
from bus.errors import (
    AccessRefused,
    BusError,
    CircuitOpen,
    ConfigError,
    Conflict,
    ConnectionLost,
    DeadlineExceeded,
    Invalid,
    NoResponder,
    NotFound,
    Reject,
    Retry,
    RpcError,
    Unavailable,
    Unroutable,
)
from bus.message import EventMeta, Message
from bus.publisher import Publisher
from bus.rpc import Method, RpcClient, RpcServer
from bus.tap import Tap

__all__ = [
    "AccessRefused",
    "Bus",
    "BusError",
    "CircuitOpen",
    "Clock",
    "ConfigError",
    "Conflict",
    "ConnectionLost",
    "ConsumerPolicy",
    "DeadlineExceeded",
    "EventConsumer",
    "EventMeta",
    "Invalid",
    "Message",
    "Method",
    "NoResponder",
    "NotFound",
    "Publisher",
    "Reject",
    "Retry",
    "RpcClient",
    "RpcError",
    "RpcServer",
    "Tap",
    "Unavailable",
    "Unroutable",
    "VirtualClock",
    "WallClock",
]
