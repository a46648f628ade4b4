"""Request/reply over `govbus.rpc` with direct reply-to.

A request goes to `govbus.rpc` with the method as routing key, `reply_to` =
`amq.rabbitmq.reply-to`, a `correlation_id`, `timestamp` (when it was sent, whole seconds as
AMQP has it) and a body that is the JSON object of the method's parameters. Its deadline is the
`expiration` (ms: the broker drops it unread once the caller has given up); govbus callers add
header `x-govbus-deadline` (epoch ms), so a server also skips work whose caller gave up while
it waited in the prefetch. The reply carries the `correlation_id`, header `x-govbus-status`
(`ok` or an error code) and a JSON body: the result or `{"code", "message", "details"}`.

Many calls share one channel: a dict of futures by correlation id, no lock. The request is
published mandatory, so a method nobody serves comes back from the broker at once and the call
raises `NoResponder` (HTTP 503 at the edge) instead of waiting for its deadline.

A server answers only requests routed through `govbus.rpc`. Every user that sends replies may
write to the default exchange, and through it into any queue by name: a request written into
`govbus.rpc.<service>` that way is never answered; it is dead-lettered with the reason into
the owning worker's DLQ (`dead_letter`, the worker's event queue) or, without one, dropped
with a warning.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar, overload

import orjson
from pydantic import BaseModel, ValidationError
from pydantic_core import to_json

from bus.breaker import CircuitBreaker
from bus.consumer import dead_letter, refusal
from bus.errors import (
    BusError,
    ConnectionLost,
    DeadlineExceeded,
    InternalError,
    NoResponder,
    RpcError,
    Unavailable,
    Unroutable,
    rpc_error,
)
from bus.message import Delivery, Message
from bus.topology import RPC, rpc_queue
from bus.transport.base import DIRECT_REPLY_TO, Subscription, Transport
from bus.validation import invalid

log = logging.getLogger(__name__)
R = TypeVar("R", bound=BaseModel)

DEFAULT_TIMEOUT_S = 5.0
STATUS = "x-govbus-status"
DEADLINE = "x-govbus-deadline"

RpcHandler = Callable[[Any], Awaitable[Any]]
H_co = TypeVar("H_co", covariant=True)


@dataclass(frozen=True, slots=True)
class Method(Generic[H_co]):
    """One method: its request model, its handler and (when known) its reply model.

    A server serves `Method[RpcHandler]`s: `handler(request)` answers. A worker's table
    (`bus.worker`) holds handlers that still want their context, bound when it starts.
    """

    request: type[BaseModel]
    handler: H_co
    reply: type[BaseModel] | None = None


class RpcClient:
    """Calls methods; one per connection, safe for any number of concurrent calls."""

    def __init__(
        self,
        transport: Transport,
        *,
        default_timeout: float = DEFAULT_TIMEOUT_S,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 5.0,
    ) -> None:
        self.transport = transport
        self.default_timeout = default_timeout
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._prefix = os.urandom(6).hex()
        self._ids = itertools.count(1)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._threshold = breaker_threshold
        self._cooldown = breaker_cooldown_s
        self._started = False
        self._starting: asyncio.Future[None] | None = None

    async def start(self) -> None:
        """Start receiving replies; concurrent first calls share one start."""
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        try:
            await asyncio.shield(self._starting)
        except BaseException:
            if self._starting.done() and not self._started:
                self._starting = None  # a failed start is tried again by the next call
            raise

    async def _start(self) -> None:
        await self.transport.consume_replies(self._on_reply)
        self.transport.on_disconnect(self._fail_pending)
        self._started = True

    def breaker(self, method: str) -> CircuitBreaker:
        breaker = self._breakers.get(method)
        if breaker is None:
            breaker = self._breakers[method] = CircuitBreaker(
                method, self._threshold, self._cooldown
            )
        return breaker

    def _on_reply(self, delivery: Delivery) -> None:
        correlation_id = delivery.message.correlation_id
        future = self._pending.pop(correlation_id, None) if correlation_id else None
        if future is not None and not future.done():
            future.set_result(delivery.message)

    def _fail_pending(self, exc: BaseException | None) -> None:
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(
                    ConnectionLost(f"the broker connection dropped: {exc or 'closed'}")
                )

    @overload
    async def call(
        self,
        method: str,
        params: BaseModel | Mapping[str, Any] | None = None,
        *,
        reply: type[R],
        timeout: float | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> R: ...

    @overload
    async def call(
        self,
        method: str,
        params: BaseModel | Mapping[str, Any] | None = None,
        *,
        reply: None = None,
        timeout: float | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> Any: ...

    async def call(
        self,
        method: str,
        params: BaseModel | Mapping[str, Any] | None = None,
        *,
        reply: type[R] | None = None,
        timeout: float | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> R | Any:
        """Call `method` and return its result (validated into `reply` when given).

        Raises the typed `RpcError` the server answered, `NoResponder` at once when no worker
        serves the method, `DeadlineExceeded` past the deadline and `CircuitOpen` while the
        method's breaker is open.
        """
        if not self._started:
            await self.start()
        breaker = self.breaker(method)
        breaker.before_call()
        timeout = self.default_timeout if timeout is None else timeout
        body = to_json(params) if isinstance(params, BaseModel) else orjson.dumps(params or {})
        correlation_id = f"{self._prefix}.{next(self._ids)}"
        now = time.time()
        message = Message(
            body=body,
            correlation_id=correlation_id,
            reply_to=DIRECT_REPLY_TO,
            timestamp=datetime.fromtimestamp(int(now), UTC),
            headers={DEADLINE: int((now + timeout) * 1000), **(headers or {})},
            expiration_ms=max(int(timeout * 1000), 1),
            persistent=False,
        )
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        try:
            async with asyncio.timeout(timeout):
                await self.transport.publish(RPC, method, message)
                answer = await future
        except Unroutable as exc:
            breaker.failure()
            raise NoResponder(f"no worker serves {method!r}", {"method": method}) from exc
        except TimeoutError as exc:
            breaker.failure()
            raise DeadlineExceeded(
                f"{method!r} did not answer within {timeout:g} s", {"method": method}
            ) from exc
        except ConnectionLost:
            # The caller's own connection dropped: that says nothing about the method's
            # workers, so their breaker is left alone (else one broker blip with a few calls
            # in flight would make the method fail fast for a whole cooldown).
            raise
        except Unavailable:
            breaker.failure()
            raise
        finally:
            self._pending.pop(correlation_id, None)
        status = answer.headers.get(STATUS, "ok")
        if isinstance(status, bytes):
            status = status.decode()
        if status != "ok":
            error = _decode_error(status, answer.body)
            # A worker that answers is alive: only its crashes count against the breaker. Its
            # `unavailable` is about the request (e.g. no host to pick for one service) and
            # must not fail every other call of the method fast.
            if isinstance(error, InternalError):
                breaker.failure()
            else:
                breaker.success()
            raise error
        breaker.success()
        if reply is not None:
            return reply.model_validate_json(answer.body)
        return orjson.loads(answer.body)


def _decode_error(status: str, body: bytes) -> RpcError:
    try:
        data = orjson.loads(body)
        return rpc_error(status, str(data.get("message", status)), data.get("details") or {})
    except (orjson.JSONDecodeError, AttributeError):
        return rpc_error(status, body[:200].decode(errors="replace") or status)


class RpcServer:
    """Serves methods from `govbus.rpc.<service>`; requests run concurrently up to prefetch.

    `dead_letter` is the routing key on `govbus.dlx` for requests that did not come through
    `govbus.rpc` (a worker gives its event queue's name, so they land in its `<queue>.dlq`);
    without it they are dropped with a warning. Either way they are never answered.
    """

    def __init__(
        self,
        transport: Transport,
        service: str,
        methods: Mapping[str, Method[RpcHandler]],
        *,
        prefetch: int = 64,
        dead_letter: str | None = None,
    ) -> None:
        self.transport = transport
        self.queue = rpc_queue(service)
        self.methods = dict(methods)
        self.prefetch = prefetch
        self.dead_letter = dead_letter
        self._subscription: Subscription | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.served = 0
        self.refused = 0

    @property
    def ready(self) -> bool:
        return self._subscription is not None and self.transport.is_connected

    async def start(self) -> None:
        await self.transport.declare_queue(self.queue)
        for method in self.methods:
            await self.transport.bind(self.queue.name, RPC, method)
        self._subscription = await self.transport.consume(
            self.queue.name, self._on_request, prefetch=self.prefetch
        )

    async def stop(self) -> None:
        sub, self._subscription = self._subscription, None
        if sub is not None:
            await sub.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5.0)
        if sub is not None:
            await sub.close()

    def _on_request(self, delivery: Delivery) -> None:
        # The one check on the hot path: a string compare.
        work = self._serve(delivery) if delivery.exchange == RPC else self._refuse(delivery)
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _refuse(self, delivery: Delivery) -> None:
        """Never answer a request that did not come through `govbus.rpc`; keep it as evidence."""
        self.refused += 1
        reason = refusal(self.queue.name, delivery.exchange, RPC) or ""
        try:
            if self.dead_letter is None:
                log.warning("dropped a request to %s: %s", delivery.routing_key, reason)
            else:
                await dead_letter(
                    self.transport,
                    delivery,
                    self.queue.name,
                    key=self.dead_letter,
                    reason=reason,
                    attempts=0,
                )
                log.warning("dead-lettered a request to %s: %s", delivery.routing_key, reason)
        except BusError as exc:
            log.warning("dropped a request to %s (%s): %s", delivery.routing_key, exc, reason)
        finally:
            try:
                await delivery.ack()
            except BusError as exc:
                log.debug("ack of a refused request failed: %s", exc)

    async def _serve(self, delivery: Delivery) -> None:
        request = delivery.message
        try:
            deadline = request.headers.get(DEADLINE)
            if isinstance(deadline, int) and deadline < time.time() * 1000:
                return  # the caller has given up; the answer would be thrown away
            if request.reply_to:
                status, body = await self._answer(delivery.routing_key, request.body)
                reply = Message(
                    body=body,
                    correlation_id=request.correlation_id,
                    headers={STATUS: status},
                    persistent=False,
                )
                await self.transport.publish(
                    "", request.reply_to, reply, mandatory=False, confirm=False
                )
                self.served += 1
        except BusError as exc:
            log.warning("replying to %s failed: %s", delivery.routing_key, exc)
        finally:
            try:
                await delivery.ack()
            except BusError as exc:
                log.debug("ack of a request failed: %s", exc)

    async def _answer(self, method_name: str, body: bytes) -> tuple[str, bytes]:
        method = self.methods.get(method_name)
        try:
            if method is None:
                raise InternalError(f"this worker does not serve {method_name!r}")
            try:
                params = method.request.model_validate_json(body or b"{}")
            except ValidationError as exc:
                raise invalid(exc) from exc
            result = await method.handler(params)
            return "ok", to_json(result)
        except RpcError as exc:
            return exc.code, to_json(exc.to_body())
        except Exception as exc:
            log.error("%s failed: %s", method_name, exc)
            log.debug("rpc handler failure", exc_info=exc)
            error = InternalError(f"{method_name} failed: {type(exc).__name__}")
            return error.code, to_json(error.to_body())
