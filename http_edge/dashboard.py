"""The dashboard: `GET /ui/`, a page of plain HTML, CSS and JavaScript shipped in the package
(`http_edge/ui/`: no framework, no CDN, so it works offline), and its session.

The page reads the same routes as any client (`/v1/services`, `/v1/resources`, `/v1/history`,
`/v1/events`), with the same scopes. Its token is entered once: `POST /ui/session` checks it
and sets it as a cookie (`HttpOnly`, so no script can read it; `SameSite=Strict`, so no other
site's page sends it; `Secure` over HTTPS; no expiry: gone with the browser session), which the
edge takes in place of `Authorization` on reads (`http_edge.api`). So the token is never in a
URL, the event stream's included (an `EventSource` cannot send headers). With auth disabled
there is nothing to sign in to.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from quart import Response, request, send_from_directory

from http_edge._context import edge, json_response
from http_edge.api import Answer, Api
from http_edge.auth import MAX_TOKEN_BYTES, SCOPES, SESSION_COOKIE, AuthError, AuthUnavailable
from http_edge.problems import Problem
from schemas import EVENT_TYPES

api = Api("dashboard")

UI = Path(__file__).with_name("ui")
Asset = Literal["app.js", "style.css"]
HTML = "text/html; charset=utf-8"


class SignIn(BaseModel):
    """`POST /ui/session`: the token to keep for this browser session."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN_BYTES)]


class Session(BaseModel):
    """What the page needs to know before it asks for data."""

    auth: bool
    """Whether the edge wants a token (false: GOVBUS_AUTH=disabled, no sign-in)."""
    signed_in: bool
    scopes: list[str]
    event_types: list[str]


def _session(*, auth: bool, scopes: frozenset[str]) -> Session:
    return Session(
        auth=auth,
        signed_in=bool(scopes),
        scopes=sorted(scopes),
        event_types=sorted(EVENT_TYPES),
    )


@api.get("/ui/", "The dashboard", ok=Answer(str, media="text/html", description="a page"))
async def page() -> Response:
    response = await send_from_directory(UI, "index.html", mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@api.get(
    "/ui/<asset>",
    "A file of the dashboard",
    path={"asset": Asset},
    ok=Answer(str, media="text/*", description="the script or the stylesheet"),
)
async def asset(asset: str) -> Response:
    mimetype = "text/css" if asset.endswith(".css") else "text/javascript"
    response = await send_from_directory(UI, asset, mimetype=mimetype)
    response.headers["Cache-Control"] = "no-cache"
    return response


@api.get(
    "/ui/session",
    "Whether the dashboard needs a token, and what the current one grants",
    ok=Answer(Session, description="the session"),
)
async def session() -> Response:
    auth = edge().auth
    if not auth.enabled:
        return json_response(_session(auth=False, scopes=frozenset(SCOPES)))
    cookie = request.cookies.get(SESSION_COOKIE)
    try:
        scopes = await auth.scopes(f"Bearer {cookie}") if cookie else frozenset()
    except (AuthError, AuthUnavailable):
        scopes = frozenset()  # expired or revoked: the page asks for a token again
    return json_response(_session(auth=True, scopes=scopes))


@api.post(
    "/ui/session",
    "Sign in: keep a token for this browser session (an HttpOnly, SameSite=Strict cookie)",
    body=SignIn,
    ok=Answer(
        Session,
        description="signed in",
        headers={"Set-Cookie": "the session cookie (HttpOnly; SameSite=Strict)"},
    ),
    raises=(401, 503),
)
async def sign_in(body: SignIn) -> Response:
    auth = edge().auth
    if not auth.enabled:
        return json_response(_session(auth=False, scopes=frozenset(SCOPES)))
    try:
        scopes = await auth.scopes(f"Bearer {body.token}")
    except AuthError as exc:
        raise Problem(401, str(exc), slug="unauthorized") from None
    except AuthUnavailable as exc:
        raise Problem(
            503, str(exc), slug="auth-unavailable", headers={"Retry-After": "1"}
        ) from None
    response = json_response(_session(auth=True, scopes=scopes))
    response.set_cookie(
        SESSION_COOKIE,
        body.token,
        httponly=True,
        samesite="Strict",
        secure=request.scheme == "https",
        path="/",
    )
    return response


@api.delete(
    "/ui/session",
    "Sign out: forget the session cookie",
    ok=Answer(Session, description="signed out (with auth disabled, there is no signing out)"),
)
async def sign_out() -> Response:
    auth = edge().auth
    scopes = frozenset() if auth.enabled else frozenset(SCOPES)
    response = json_response(_session(auth=auth.enabled, scopes=scopes))
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="Strict", secure=request.scheme == "https"
    )
    return response
