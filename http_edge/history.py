"""`GET /v1/history?at=TIME`: the registry and the inventory at a past moment.

The edge does not compute history: a `HistorySource` given to `create_app` does (govbus gives
it a `bus.history.History` with the real workers, following the recorded log). Its answer is
`govbus replay --until TIME`'s; a moment before the oldest recorded one is a 404 naming that
moment (`TooEarly`, a `NotFound` through the one error table).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from quart import Response

from bus.errors import NotFound
from http_edge._context import edge, json_response
from http_edge.api import Answer, Api
from http_edge.models import HistoryQuery, HistoryRange, HistoryView
from http_edge.problems import Problem

api = Api("history")

SCOPES = ("registry:read", "resources:read")


class HistorySource(Protocol):
    """What answers history questions (`bus.history.History` does)."""

    async def at(self, moment: datetime) -> dict[str, Any]:
        """The state at `moment`; raises `bus.errors.NotFound` before the oldest one kept."""
        ...

    async def oldest(self) -> datetime | None:
        """The oldest moment kept (None: nothing recorded yet)."""
        ...


def _source() -> HistorySource:
    source = edge().history
    if source is None:
        raise Problem(404, "this edge keeps no history", slug="no-history")
    return source


@api.get(
    "/v1/history",
    "The registry and the inventory as they were at a moment (`govbus replay --until`)",
    scope=SCOPES,
    query=HistoryQuery,
    ok=Answer(HistoryView, description="the state at `at`, computed from the recorded log"),
    raises=(404,),
)
async def history(query: HistoryQuery) -> Response:
    try:
        state = await _source().at(query.at)
    except NotFound as exc:
        # The problem names the oldest moment twice: in words, and as a member to act on.
        oldest = {"oldest": exc.details["oldest"]} if "oldest" in exc.details else {}
        raise Problem(404, exc.message, slug="not-found", **oldest) from None
    return json_response(state)


@api.get(
    "/v1/history/oldest",
    "The oldest moment `/v1/history` can answer for",
    scope=SCOPES,
    ok=Answer(HistoryRange, description="`oldest` is null until something is recorded"),
    raises=(404,),
)
async def oldest() -> Response:
    moment = await _source().oldest()
    return json_response(HistoryRange(oldest=moment))
