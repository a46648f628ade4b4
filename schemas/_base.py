"""The three bases every message derives from."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["Event", "Reply", "Request"]


class Event(BaseModel):
    """The payload of an event on `govbus.events`.

    `TYPE` is the event type, which is also the routing key. Schema changes are additive, so
    unknown fields are ignored; a breaking change is a new type with a `.v2` suffix.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    TYPE: ClassVar[str]


class Request(BaseModel):
    """The params of an RPC request on `govbus.rpc`.

    Unknown fields are refused: a request names exactly what it asks for, so a misspelt filter
    or a smuggled field (mass assignment) is an `invalid` error rather than silently dropped.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)


class Reply(BaseModel):
    """The result of an RPC request. Like events, replies only grow: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)
