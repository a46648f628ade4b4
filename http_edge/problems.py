"""RFC 9457 problem details, and the one table that maps bus errors to HTTP statuses."""

from __future__ import annotations

import math
from http import HTTPStatus
from typing import Any

import orjson
from pydantic import ValidationError
from quart import Response

from bus.errors import (
    BusError,
    CircuitOpen,
    Conflict,
    ConnectionLost,
    DeadlineExceeded,
    InternalError,
    Invalid,
    NoResponder,
    NotFound,
    PublishError,
    RpcError,
    Unavailable,
    Unroutable,
)
from bus.validation import field_errors, summary

PROBLEM_JSON = "application/problem+json"
DEFAULT_RETRY_AFTER_S = 1

# The one table: bus error -> (HTTP status, problem type slug). Most specific class first.
ERROR_STATUS: tuple[tuple[type[BusError], int, str], ...] = (
    (NotFound, 404, "not-found"),
    (Invalid, 422, "invalid"),
    (Conflict, 409, "conflict"),
    (CircuitOpen, 503, "circuit-open"),
    (NoResponder, 503, "no-responder"),
    (Unavailable, 503, "unavailable"),
    (DeadlineExceeded, 504, "timeout"),
    (Unroutable, 503, "no-consumer"),
    (ConnectionLost, 503, "bus-unavailable"),
    (PublishError, 503, "publish-failed"),
    (InternalError, 502, "worker-error"),
    (RpcError, 502, "worker-error"),
)


class Problem(Exception):
    """An HTTP error answered as `application/problem+json`."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.slug = slug or HTTPStatus(status).phrase.lower().replace(" ", "-")
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://govbus.dev/problems/{self.slug}",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def response(self, instance: str | None = None) -> Response:
        return Response(
            orjson.dumps(self.body(instance)),
            status=self.status,
            headers=self.headers,
            content_type=PROBLEM_JSON,
        )


def from_bus_error(exc: BusError) -> Problem:
    """The problem a bus error becomes, by the table above."""
    status, slug = next(
        ((status, slug) for cls, status, slug in ERROR_STATUS if isinstance(exc, cls)),
        (503, "bus-error"),
    )
    headers: dict[str, str] = {}
    if status == 503:
        retry = getattr(exc, "retry_after", None) or DEFAULT_RETRY_AFTER_S
        headers["Retry-After"] = str(max(1, math.ceil(retry)))
    details = exc.details if isinstance(exc, RpcError) else {}
    errors = details.get("errors") if isinstance(details.get("errors"), list) else None
    if isinstance(exc, Invalid) and errors is None:
        field = details.get("field")
        errors = [{"field": str(field), "message": str(exc)}] if field else []
    detail = exc.message if isinstance(exc, RpcError) else str(exc)
    return Problem(status, detail, slug=slug, errors=errors, headers=headers)


def from_validation_error(exc: ValidationError, *, where: str = "body") -> Problem:
    """422 naming each bad field (`errors`: `{field, message}`), `where` prefixed: body, query."""
    errors = field_errors(exc, prefix=where)
    return Problem(422, summary(errors) or f"{where}: invalid", slug="invalid", errors=errors)
