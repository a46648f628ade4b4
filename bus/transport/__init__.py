"""Transports: the port and its two adapters, chosen by URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from bus.errors import ConfigError
from bus.transport.base import DIRECT_REPLY_TO, QueueSpec, Subscription, Transport
from bus.transport.memory import MemoryTransport

__all__ = [
    "DIRECT_REPLY_TO",
    "MemoryTransport",
    "QueueSpec",
    "Subscription",
    "Transport",
    "create_transport",
]


def create_transport(url: str, *, name: str = "govbus") -> Transport:
    """`memory://[name]` gives the embedded broker; `amqp://` and `amqps://` give RabbitMQ."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryTransport(url)
    if scheme in ("amqp", "amqps"):
        from bus.transport.amqp import AmqpTransport  # aio-pika loads only when it is used

        return AmqpTransport(url, name=name)
    raise ConfigError(f"GOVBUS_URL must start with amqp://, amqps:// or memory://, got {url!r}")
