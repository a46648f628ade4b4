"""Resource routes, answered by the manager worker; `ETag` is the version, `If-Match` guards
changes. The article's `/resource` and `/resource/<name>` are the same queries."""

from __future__ import annotations

import itertools

from quart import Blueprint, Response, request

from bus.errors import Conflict
from http_edge._context import call, endpoint, json_body, json_response, path_param, query
from http_edge.models import RESOURCE_NAME, ResourcesQuery, pairs_to_dict
from http_edge.problems import Problem
from schemas.resources import SPEC_ADAPTER, Resource, ResourcePatch
from schemas.rpc import (
    CreateResourceRequest,
    DeleteReply,
    DeleteResourceRequest,
    ResourcePage,
    ResourceReply,
    ResourceRequest,
    ResourcesRequest,
)

blueprint = Blueprint("resources", __name__)

READ = "resources:read"
WRITE = "resources:write"
MAX_VERSION = 2**63 - 1
UNCONDITIONAL_ATTEMPTS = 5


def _etag(resource: Resource) -> dict[str, str]:
    return {"ETag": f'"{resource.version}"'}


def _if_match() -> int | None:
    """The version `If-Match` names (`"3"`, `W/"3"` or `3`); 412-free: a bad one is 400."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return None
    text = header.strip().removeprefix("W/").strip('"')
    if not text.isdigit() or not 1 <= int(text) <= MAX_VERSION:
        raise Problem(
            400,
            'If-Match must be the ETag of the resource, e.g. "3"',
            slug="bad-if-match",
            errors=[{"field": "header.If-Match", "message": "must be a version ETag"}],
        )
    return int(text)


async def _page() -> ResourcePage:
    q = query(ResourcesQuery)
    params = ResourcesRequest(
        kind=q.kind,
        status=q.status,
        label=pairs_to_dict(q.label),
        limit=q.limit,
        cursor=q.cursor,
    )
    return await call("manager.resources", params, ResourcePage)


async def _one(name: str) -> Resource:
    name = path_param(RESOURCE_NAME, "name", name)
    reply = await call("manager.resource", ResourceRequest(name=name), ResourceReply)
    return reply.root


@blueprint.get("/v1/resources")
@endpoint(READ)
async def list_resources() -> Response:
    return json_response(await _page())


@blueprint.post("/v1/resources")
@endpoint(WRITE)
async def create_resource() -> Response:
    spec = await json_body(SPEC_ADAPTER)
    reply = await call("manager.create", CreateResourceRequest(spec=spec), ResourceReply)
    resource = reply.root
    headers = {**_etag(resource), "Location": f"/v1/resources/{resource.name}"}
    return json_response(resource, 201, headers)


@blueprint.get("/v1/resources/<name>")
@endpoint(READ)
async def get_resource(name: str) -> Response:
    resource = await _one(name)
    return json_response(resource, headers=_etag(resource))


@blueprint.patch("/v1/resources/<name>")
@endpoint(WRITE)
async def update_resource(name: str) -> Response:
    name = path_param(RESOURCE_NAME, "name", name)
    expected = _if_match()
    changes = await json_body(ResourcePatch)
    # Only the fields given travel: an unset field is "keep", never null.
    params = {"name": name, "expected_version": expected, "changes": changes.changes()}
    if expected is not None:
        resource = (await call("manager.update", params, ResourceReply)).root
        return json_response(resource, headers=_etag(resource))
    # No If-Match: no precondition, so the change applies to whatever version is current
    # (read, then update at that version; again if a concurrent change came first).
    for attempt in itertools.count(1):
        params["expected_version"] = (await _one(name)).version
        try:
            resource = (await call("manager.update", params, ResourceReply)).root
            break
        except Conflict as exc:
            if not _stale(exc) or attempt >= UNCONDITIONAL_ATTEMPTS:
                raise
    return json_response(resource, headers=_etag(resource))


@blueprint.delete("/v1/resources/<name>")
@endpoint(WRITE)
async def delete_resource(name: str) -> Response:
    name = path_param(RESOURCE_NAME, "name", name)
    expected = _if_match()
    for attempt in itertools.count(1):
        try:
            params = DeleteResourceRequest(name=name, expected_version=expected)
            reply = await call("manager.delete", params, DeleteReply)
            break
        except Conflict as exc:
            # Without If-Match the delete has no precondition: a version that moved under it
            # (a host event, say) is not the caller's conflict.
            if expected is not None or not _stale(exc) or attempt >= UNCONDITIONAL_ATTEMPTS:
                raise
    return json_response(reply)


def _stale(exc: Conflict) -> bool:
    """A version conflict (the manager names the expected version), not e.g. attached volumes."""
    return "expected_version" in exc.details


# --- the article's routes --------------------------------------------------------------------


@blueprint.get("/resource")
@endpoint(READ)
async def article_list() -> Response:
    return json_response([item.model_dump(mode="json") for item in (await _page()).items])


@blueprint.get("/resource/<name>")
@endpoint(READ)
async def article_one(name: str) -> Response:
    return json_response(await _one(name))
