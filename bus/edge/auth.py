"""JWT bearer tokens: verification at the edge, minting for `govbus token` and `govbus up`.

HS256 with a shared secret (`GOVBUS_AUTH_SECRET`) or RS256 with a public key
(`GOVBUS_AUTH_PUBLIC_KEY`, a PEM file; the matching private key mints). Only the configured
algorithm is accepted, so a token cannot choose how it is checked. Scopes travel in the
`scope` claim, space-separated (RFC 8693).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import jwt
from jwt.algorithms import RSAAlgorithm

from bus.errors import ConfigError
from bus.settings import Settings

log = logging.getLogger(__name__)

SCOPES = (
    "registry:read",
    "registry:write",
    "resources:read",
    "resources:write",
    "events:read",
)
ISSUER = "govbus"
DEFAULT_TTL_S = 3600
MAX_TOKEN_BYTES = 8192
MIN_SECRET_BYTES = 32


class AuthError(Exception):
    """A token that is missing, malformed, expired or forged (HTTP 401)."""


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Checks bearer tokens; `enabled=False` lets every request through (GOVBUS_AUTH=disabled)."""

    enabled: bool
    algorithm: str = "HS256"
    key: str | bytes = b""

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Raises `ConfigError` when auth is required and no key is configured."""
        if settings.auth == "disabled":
            log.warning("GOVBUS_AUTH=disabled: the edge accepts requests without a token")
            return cls(enabled=False)
        if settings.auth_public_key:
            pem = _read_pem("GOVBUS_AUTH_PUBLIC_KEY", settings.auth_public_key)
            try:
                RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(pem)
            except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
                raise ConfigError(f"GOVBUS_AUTH_PUBLIC_KEY: not an RSA public key: {exc}") from None
            return cls(True, "RS256", pem)
        if settings.auth_secret:
            return cls(True, "HS256", check_secret(settings.auth_secret))
        raise ConfigError(
            "GOVBUS_AUTH_SECRET: not set (or set GOVBUS_AUTH_PUBLIC_KEY, or GOVBUS_AUTH=disabled)"
        )

    def scopes(self, authorization: str | None) -> frozenset[str]:
        """The scopes a request's `Authorization` header grants; raises `AuthError`."""
        if not self.enabled:
            return frozenset(SCOPES)
        if not authorization:
            raise AuthError("missing bearer token")
        kind, _, token = authorization.partition(" ")
        token = token.strip()
        if kind.lower() != "bearer" or not token:
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError("token too long")
        try:
            claims = jwt.decode(
                token,
                self.key,
                algorithms=[self.algorithm],
                options={"require": ["exp"]},
                issuer=ISSUER,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise AuthError("invalid token: the scope claim must be a string")
        return frozenset(scope.split())


def _read_pem(variable: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None


def check_secret(secret: str) -> str:
    """HS256 wants a key as long as its hash: refuse shorter secrets (`ConfigError`)."""
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"GOVBUS_AUTH_SECRET: must be at least {MIN_SECRET_BYTES} bytes long")
    return secret


def new_secret() -> str:
    """A fresh HMAC secret (what `govbus up` uses when none is configured)."""
    return secrets.token_urlsafe(32)


def mint_token(
    scopes: list[str] | tuple[str, ...],
    *,
    ttl_s: int = DEFAULT_TTL_S,
    secret: str | None = None,
    private_key: bytes | None = None,
    subject: str = "govbus-cli",
) -> str:
    """A signed token granting `scopes` for `ttl_s` seconds (HS256 with `secret`, RS256 with
    `private_key` PEM). Raises `ConfigError` for an unknown scope or no key."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise ConfigError(f"unknown scope {unknown[0]!r}; scopes are: {', '.join(SCOPES)}")
    if ttl_s <= 0:
        raise ConfigError("the token TTL must be positive")
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": subject,
        "iat": now,
        "exp": now + ttl_s,
        "scope": " ".join(dict.fromkeys(scopes)),
    }
    if private_key is not None:
        try:
            return jwt.encode(claims, private_key, algorithm="RS256")
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"the private key is not a usable RSA PEM key: {exc}") from None
    if secret:
        return jwt.encode(claims, check_secret(secret), algorithm="HS256")
    raise ConfigError("GOVBUS_AUTH_SECRET: not set (or pass --private-key for RS256)")
