"""Every error govbus raises, under one root.

The tree::

    BusError
    ├── ConfigError (also ValueError)        a bad URL, setting or argument
    ├── TopologyError                        a declaration the broker refused
    ├── AccessRefused                        the broker user may not do that (ACCESS_REFUSED)
    ├── ConnectionLost                       the broker connection dropped or could not be made
    │   ├── BrokerUnreachable                nothing answered at the broker address
    │   └── LoginRefused                     the broker refused the user (password, vhost)
    ├── PublishError                         the broker did not confirm a publish
    │   └── Unroutable                       no queue took a mandatory message
    ├── DecodeError (also ValueError)        a message that is not a valid event of its type
    ├── HandlerError                         raised by handlers to steer the consumer's ack policy
    │   ├── Retry                            transient: try again with backoff, then dead-letter
    │   └── Reject                           permanent: dead-letter now
    └── RpcError                             a request/reply call failed; `code` is the wire code
        ├── NotFound          not_found
        ├── Invalid           invalid (also ValueError)
        ├── Conflict          conflict
        ├── Unavailable       unavailable
        │   ├── NoResponder   no worker is bound to the method (mandatory return)
        │   └── CircuitOpen   the caller's breaker for the method is open
        ├── DeadlineExceeded  timeout: no answer before the deadline
        └── InternalError     internal

aio-pika and aiormq exceptions are translated at the adapter boundary
(`bus.transport.amqp`) with ``raise X(...) from exc``; nothing above the transport sees them.
"""

from __future__ import annotations

from typing import Any, ClassVar

from schemas import ErrorBody, ErrorCode


class BusError(Exception):
    """Root of every govbus error."""


class ConfigError(BusError, ValueError):
    """A bad setting, URL or argument: the message names it."""


class TopologyError(BusError):
    """The broker refused a declaration."""


class AccessRefused(BusError):
    """The broker refused the operation to this user (its permissions, ACCESS_REFUSED)."""


class ConnectionLost(BusError):
    """The connection to the broker is down (it reconnects by itself)."""


class BrokerUnreachable(ConnectionLost):
    """No broker answered at the configured address."""


class LoginRefused(ConnectionLost):
    """The broker answered and refused this user: authentication failed (wrong user name or
    password), or the user may not open the vhost. The message names user and address, never
    the password."""


class PublishError(BusError):
    """The broker did not confirm a publish: the message may not have been stored."""


class Unroutable(PublishError):
    """A mandatory message was returned: no queue is bound for its routing key."""

    def __init__(self, exchange: str, routing_key: str) -> None:
        super().__init__(f"no queue is bound to {exchange!r} for routing key {routing_key!r}")
        self.exchange = exchange
        self.routing_key = routing_key


class DecodeError(BusError, ValueError):
    """A message body or its attributes are not a valid event."""


class HandlerError(BusError):
    """Base of the exceptions a handler raises to steer acknowledgement."""


class Retry(HandlerError):
    """Transient failure: the consumer retries with backoff, then dead-letters."""


class Reject(HandlerError):
    """Permanent failure: the consumer dead-letters the message at once."""


class RpcError(BusError):
    """A request/reply call failed. `code` travels as the `x-govbus-status` header."""

    code: ClassVar[ErrorCode] = "internal"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_body(self) -> ErrorBody:
        """The body of the reply that carries this error (`x-govbus-status` = `code`)."""
        return ErrorBody(code=self.code, message=self.message, details=self.details)


class NotFound(RpcError):
    code = "not_found"


class Invalid(RpcError, ValueError):
    code = "invalid"


class Conflict(RpcError):
    code = "conflict"


class Unavailable(RpcError):
    code = "unavailable"

    def __init__(
        self,
        message: str,
        details: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, details)
        self.retry_after = retry_after


class NoResponder(Unavailable):
    """No worker serves the method right now."""


class CircuitOpen(Unavailable):
    """Calls to the method fail fast until the breaker half-opens."""


class DeadlineExceeded(RpcError):
    code = "timeout"


class InternalError(RpcError):
    code = "internal"


RPC_ERRORS: dict[str, type[RpcError]] = {
    cls.code: cls
    for cls in (NotFound, Invalid, Conflict, Unavailable, DeadlineExceeded, InternalError)
}


def rpc_error(code: str, message: str, details: dict[str, Any] | None = None) -> RpcError:
    """The typed exception for a wire error code (unknown codes become `InternalError`)."""
    return RPC_ERRORS.get(code, InternalError)(message, details)
