"""One way to say what is wrong with an input pydantic refused.

`field_errors` turns a `ValidationError` into `[{"field", "message"}]` (the shape of the
`errors` of an `invalid` RPC error and of a 422 problem), `summary` into one line
`field: message; field: message` (a dead-letter reason, a CLI error, an error's message).
Every place that reports a validation error goes through them, so each says it the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pydantic import ValidationError

from bus.errors import Invalid

SUMMARY_LIMIT = 5
"""At most this many errors in a one-line summary (the `errors` list has them all)."""


def field_errors(
    exc: ValidationError, *, prefix: str = "", whole: str = "body"
) -> list[dict[str, str]]:
    """Each error as `{"field", "message"}`.

    `field` is the dotted location of the error under `prefix` (`body.port`, `spec.vcpus`);
    an error about the input as a whole (a model check, JSON that does not parse) is named
    `prefix`, or `whole` without one. `message` is pydantic's, without its `Value error, `.
    """
    errors = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        path = ".".join(str(part) for part in error["loc"])
        field = f"{prefix}.{path}" if prefix and path else (path or prefix or whole)
        errors.append({"field": field, "message": error["msg"].removeprefix("Value error, ")})
    return errors


def summary(errors: Sequence[Mapping[str, str]], *, limit: int = SUMMARY_LIMIT) -> str:
    """One line naming each bad field: `port: Input should be ...; tags.0: ...`."""
    return "; ".join(
        f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors[:limit]
    )


def describe_validation(exc: ValidationError, *, prefix: str = "", whole: str = "body") -> str:
    """`summary(field_errors(exc))`: the one-line account of a refused input."""
    return summary(field_errors(exc, prefix=prefix, whole=whole))


def invalid(exc: ValidationError, *, prefix: str = "") -> Invalid:
    """The `invalid` RPC error for a refused request: the summary as its message, every
    `{field, message}` in `details.errors`."""
    errors = field_errors(exc, prefix=prefix)
    return Invalid(summary(errors), {"errors": errors})
