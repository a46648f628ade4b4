"""Resource routes, answered by the manager worker; `ETag` is the version, `If-Match` guards
changes. The article's `/resource` and `/resource/<name>` are the same queries."""

from __future__ import annotations

import itertools

from quart import Response

from bus.errors import Conflict
from http_edge._context import call, json_response
from http_edge.api import Answer, Api
from http_edge.models import (
    IfMatch,
    ResourceSpecBody,
    ResourcesQuery,
    if_match_version,
    pairs_to_dict,
)
from schemas import ResourceName
from schemas.resources import Resource, ResourcePatch
from schemas.rpc import (
    CreateResourceRequest,
    DeleteReply,
    DeleteResourceRequest,
    ResourcePage,
    ResourceReply,
    ResourceRequest,
    ResourcesRequest,
)

api = Api("resources")

READ = "resources:read"
WRITE = "resources:write"
UNCONDITIONAL_ATTEMPTS = 5

ETAG = {"ETag": 'the version, e.g. "3": `If-Match` takes it back'}
NAME = {"name": ResourceName}
IF_MATCH = {"If-Match": IfMatch}


def _etag(resource: Resource) -> dict[str, str]:
    return {"ETag": f'"{resource.version}"'}


async def _page(query: ResourcesQuery) -> ResourcePage:
    params = ResourcesRequest(
        kind=query.kind,
        status=query.status,
        label=pairs_to_dict(query.label),
        limit=query.limit,
        cursor=query.cursor,
    )
    return await call("manager.resources", params, ResourcePage)


async def _one(name: str) -> Resource:
    reply = await call("manager.resource", ResourceRequest(name=name), ResourceReply)
    return reply.root


@api.get(
    "/v1/resources",
    "A page of resources",
    scope=READ,
    query=ResourcesQuery,
    ok=Answer(ResourcePage, description="a page; `next` is the cursor of the next one"),
    bus=True,
)
async def list_resources(query: ResourcesQuery) -> Response:
    return json_response(await _page(query))


@api.post(
    "/v1/resources",
    "Create a resource (a vm is placed on a healthy host)",
    scope=WRITE,
    body=ResourceSpecBody,
    ok=Answer(ResourceReply, 201, "the resource", headers={**ETAG, "Location": "the resource"}),
    raises=(409,),
    bus=True,
)
async def create_resource(body: ResourceSpecBody) -> Response:
    reply = await call("manager.create", CreateResourceRequest(spec=body.root), ResourceReply)
    resource = reply.root
    headers = {**_etag(resource), "Location": f"/v1/resources/{resource.name}"}
    return json_response(resource, 201, headers)


@api.get(
    "/v1/resources/<name>",
    "One resource",
    scope=READ,
    path=NAME,
    ok=Answer(ResourceReply, description="the resource", headers=ETAG),
    raises=(404,),
    bus=True,
)
async def get_resource(name: str) -> Response:
    resource = await _one(name)
    return json_response(resource, headers=_etag(resource))


@api.patch(
    "/v1/resources/<name>",
    "Change fields of a resource (those of its kind); If-Match: its ETag",
    scope=WRITE,
    path=NAME,
    headers=IF_MATCH,
    body=ResourcePatch,
    ok=Answer(ResourceReply, description="the resource", headers=ETAG),
    raises=(404, 409),
    bus=True,
)
async def update_resource(name: str, if_match: str | None, body: ResourcePatch) -> Response:
    expected = if_match_version(if_match)
    # Only the fields given travel: an unset field is "keep", never null.
    params = {"name": name, "expected_version": expected, "changes": body.changes()}
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


@api.delete(
    "/v1/resources/<name>",
    "Delete a resource; If-Match: its ETag",
    scope=WRITE,
    path=NAME,
    headers=IF_MATCH,
    ok=Answer(DeleteReply, description="deleted"),
    raises=(404, 409),
    bus=True,
)
async def delete_resource(name: str, if_match: str | None) -> Response:
    expected = if_match_version(if_match)
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


@api.get(
    "/resource",
    "The article's resource list",
    scope=READ,
    query=ResourcesQuery,
    ok=Answer(list[Resource], description="the resources"),
    bus=True,
)
async def article_list(query: ResourcesQuery) -> Response:
    page = await _page(query)
    return json_response([item.model_dump(mode="json") for item in page.items])


@api.get(
    "/resource/<name>",
    "The article's resource by name",
    scope=READ,
    path=NAME,
    ok=Answer(ResourceReply, description="the resource"),
    raises=(404,),
    bus=True,
)
async def article_one(name: str) -> Response:
    return json_response(await _one(name))
