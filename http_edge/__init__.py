"""The HTTP edge: a Quart app whose every query is a request/reply on the bus."""

from http_edge._context import Limits
from http_edge.app import create_app
from http_edge.auth import SCOPES, Authenticator, mint_token
from http_edge.problems import ERROR_STATUS, Problem

__all__ = [
    "ERROR_STATUS",
    "SCOPES",
    "Authenticator",
    "Limits",
    "Problem",
    "create_app",
    "mint_token",
]
