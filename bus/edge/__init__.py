"""The HTTP edge: a Quart app whose every query is a request/reply on the bus."""

from bus.edge._context import Limits
from bus.edge.app import create_app
from bus.edge.auth import SCOPES, Authenticator, mint_token
from bus.edge.problems import ERROR_STATUS, Problem

__all__ = [
    "ERROR_STATUS",
    "SCOPES",
    "Authenticator",
    "Limits",
    "Problem",
    "create_app",
    "mint_token",
]
