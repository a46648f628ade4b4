"""JWT bearer tokens: verification at the edge, minting for `govbus token` and `govbus up`.

govbus' own tokens (issuer `govbus`): HS256 with a shared secret (`GOVBUS_AUTH_SECRET`) or RS256
with a public key (`GOVBUS_AUTH_PUBLIC_KEY`, a PEM file; the matching private key mints). Only
the configured algorithm is accepted, so a token cannot choose how it is checked.

Tokens of an OAuth 2 / OpenID Connect provider (`GOVBUS_AUTH_JWKS_URL`, `GOVBUS_AUTH_ISSUER`,
`GOVBUS_AUTH_AUDIENCE`) are checked by `http_edge.oidc`. Both may be configured at once: a token
whose `iss` is the provider's goes to the provider's keys, any other to govbus' own key. The
unverified `iss` only picks the verifier; each verifier checks everything itself.

Scopes travel in the `scope` claim, space-separated (RFC 8693), or in `scp`, a list of strings
(as some providers write them); a token carrying both grants the union.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from jwt.algorithms import RSAAlgorithm

from bus.errors import ConfigError
from bus.settings import OWN_ISSUER, Settings

if TYPE_CHECKING:
    from http_edge.oidc import OidcVerifier

log = logging.getLogger(__name__)

SCOPES = (
    "registry:read",
    "registry:write",
    "resources:read",
    "resources:write",
    "events:read",
)
ISSUER = OWN_ISSUER
SESSION_COOKIE = "govbus_session"
"""The dashboard's cookie: the token given to `POST /ui/session`, `HttpOnly`,
`SameSite=Strict`, for the browser session; accepted in place of `Authorization` on reads."""
DEFAULT_TTL_S = 3600
MAX_TOKEN_BYTES = 8192
MAX_VERIFIED = 4096  # tokens remembered as verified (then forgotten all at once)
REVERIFY_S = 60.0  # the longest a verified token goes without its signature checked again
MIN_SECRET_BYTES = 32


class AuthError(Exception):
    """A token that is missing, malformed, expired or forged (HTTP 401)."""


class AuthUnavailable(Exception):
    """The token cannot be checked now: the provider's keys are out of reach (HTTP 503)."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class Authenticator:
    """Checks bearer tokens; `enabled=False` lets every request through (GOVBUS_AUTH=disabled).

    `key` (with `algorithm`) verifies govbus' own tokens, `oidc` a provider's; either may be
    missing, not both.
    """

    enabled: bool
    algorithm: str = "HS256"
    key: str | bytes = b""
    oidc: OidcVerifier | None = None
    # govbus's own tokens verified lately: token -> (scopes, until). A client sends the same
    # token with every request, and a signature check costs more than the rest of a cached
    # read (HS256 ~77 us, RS256 ~230 us). Kept until the token's `exp` (at most `REVERIFY_S`).
    # Not a provider's: a key it withdraws must stop working as soon as its JWKS says so.
    _verified: dict[str, tuple[frozenset[str], float]] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        """Raises `ConfigError` when auth is required and no key is configured."""
        if settings.auth == "disabled":
            log.warning("GOVBUS_AUTH=disabled: the edge accepts requests without a token")
            return cls(enabled=False)
        oidc = None
        if settings.auth_jwks_url and settings.auth_issuer and settings.auth_audience:
            from http_edge.oidc import OidcVerifier

            oidc = OidcVerifier(
                settings.auth_jwks_url,
                issuer=settings.auth_issuer,
                audience=settings.auth_audience,
            )
        if settings.auth_public_key:
            pem = _read_pem("GOVBUS_AUTH_PUBLIC_KEY", settings.auth_public_key)
            try:
                RSAAlgorithm(RSAAlgorithm.SHA256).prepare_key(pem)
            except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
                raise ConfigError(f"GOVBUS_AUTH_PUBLIC_KEY: not an RSA public key: {exc}") from None
            return cls(True, "RS256", pem, oidc)
        if settings.auth_secret:
            return cls(True, "HS256", check_secret(settings.auth_secret), oidc)
        if oidc is not None:
            return cls(True, oidc=oidc)
        raise ConfigError(
            "GOVBUS_AUTH_SECRET: not set (or set GOVBUS_AUTH_PUBLIC_KEY, GOVBUS_AUTH_JWKS_URL, "
            "or GOVBUS_AUTH=disabled)"
        )

    async def scopes(self, authorization: str | None) -> frozenset[str]:
        """The scopes a request's `Authorization` header grants.

        Raises `AuthError` (401) for a missing or bad token, `AuthUnavailable` (503) when the
        provider's keys cannot be fetched.
        """
        if not self.enabled:
            return frozenset(SCOPES)
        token = _bearer(authorization)
        now = time.time()
        seen = self._verified.get(token)
        if seen is not None and now < seen[1]:
            return seen[0]
        if self.oidc is not None and self.oidc.issued(_unverified(token)):
            return granted(await self.oidc.verify(token))
        claims = self._verify_own(token)
        scopes = granted(claims)
        if len(self._verified) >= MAX_VERIFIED:
            self._verified.clear()
        exp = claims.get("exp")
        if isinstance(exp, int | float):
            self._verified[token] = (scopes, min(float(exp), now + REVERIFY_S))
        return scopes

    def _verify_own(self, token: str) -> dict[str, Any]:
        if not self.key:  # the provider's tokens only
            issuer = self.oidc.issuer if self.oidc is not None else "the configured issuer"
            raise AuthError(f"invalid token: not issued by {issuer}")
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
            raise _invalid(exc) from None
        return claims


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise AuthError("missing bearer token")
    kind, _, token = authorization.partition(" ")
    token = token.strip()
    if kind.lower() != "bearer" or not token:
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    if len(token) > MAX_TOKEN_BYTES:
        raise AuthError("token too long")
    return token


def _unverified(token: str) -> dict[str, Any]:
    """The claims, unchecked: only to pick the verifier, which then checks everything."""
    try:
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise _invalid(exc) from None
    return claims


def _invalid(exc: jwt.InvalidTokenError) -> AuthError:
    """A bad token in the user's words: how the decoder failed (a codec error at byte 1,
    bad padding, "not enough segments") says nothing to someone who pasted the wrong thing."""
    if isinstance(exc, jwt.InvalidSignatureError):
        return AuthError("invalid token: the signature does not match (made with another key?)")
    if isinstance(exc, jwt.DecodeError):
        return AuthError("invalid token: not a JWT (header.payload.signature, each base64url)")
    return AuthError(f"invalid token: {exc}")


def granted(claims: dict[str, Any]) -> frozenset[str]:
    """The scopes verified claims grant: `scope` (space-separated) and/or `scp` (a list)."""
    scopes: set[str] = set()
    scope = claims.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise AuthError("invalid token: the scope claim must be a string")
        scopes.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        scopes.update(scp.split())
    elif isinstance(scp, list) and all(isinstance(item, str) for item in scp):
        scopes.update(scp)
    elif scp is not None:
        raise AuthError("invalid token: the scp claim must be a list of strings")
    return frozenset(scopes)


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
