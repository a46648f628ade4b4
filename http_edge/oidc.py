"""Tokens from an OAuth 2 / OpenID Connect provider: keys by `kid` from its JWKS.

PyJWT's `PyJWKClient` fetches, parses and caches the provider's key set (`lifespan_s`) and
fetches it again when a token names a `kid` the cached set lacks: that is how a rotated key is
picked up. Its fetch is blocking `urllib`, so it never runs on the event loop:

- a token whose `kid` is in the cached set is checked at once, on the loop (no I/O);
- otherwise one fetch at a time runs in a thread (`asyncio.to_thread`), the others wait for it;
- at most one fetch per `cooldown_s`: within it an unknown `kid` is refused at once (401) and,
  after a failed fetch, every token needing a fetch is answered 503 at once. So a flood of
  tokens with random `kid`s costs the provider one request per `cooldown_s`, not one each.

Only RS256 and ES256 are accepted, and each key only with its own algorithm (PyJWT binds a
token's `alg` to the JWK's), so a token cannot choose how it is checked.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWKSetError

from http_edge.auth import AuthError, AuthUnavailable

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "ES256")
DEFAULT_LIFESPAN_S = 300.0
DEFAULT_COOLDOWN_S = 10.0
DEFAULT_TIMEOUT_S = 3.0
# Clock skew allowed between the provider and the edge on `exp`, `nbf` and `iat`.
LEEWAY_S = 30


class OidcVerifier:
    """Verifies tokens of one provider: signature by `kid` from `jwks_url`, `iss`, `aud`, `exp`."""

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        lifespan_s: float = DEFAULT_LIFESPAN_S,
        cooldown_s: float = DEFAULT_COOLDOWN_S,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.cooldown_s = cooldown_s
        self.timeout_s = timeout_s
        self._client = PyJWKClient(
            jwks_url,
            cache_keys=False,  # its per-kid cache never expires: a key removed would stay trusted
            cache_jwk_set=True,
            lifespan=lifespan_s,
            timeout=timeout_s,
            cooldown_duration=cooldown_s,
            headers={"User-Agent": "govbus-edge"},
        )
        self._lock = asyncio.Lock()
        self._tried_at = -math.inf
        self._failure: str | None = None
        host = urlsplit(jwks_url).hostname or ""
        if urlsplit(jwks_url).scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
            log.warning(
                "GOVBUS_AUTH_JWKS_URL is plain http: whoever sits between the edge and %s "
                "can forge tokens; use https",
                host,
            )

    def issued(self, claims: dict[str, Any]) -> bool:
        """True if unverified `claims` say this provider issued the token."""
        return claims.get("iss") == self.issuer

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, verified; raises `AuthError` (401) or `AuthUnavailable` (503)."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("invalid token: its header names no signing key (kid)")
        if header.get("alg") not in ALGORITHMS:
            raise AuthError(f"invalid token: the algorithm must be one of {', '.join(ALGORITHMS)}")
        key = await self.key(kid)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(ALGORITHMS),
                issuer=self.issuer,
                audience=self.audience,
                leeway=LEEWAY_S,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        return claims

    async def key(self, kid: str) -> PyJWK:
        """The provider's signing key `kid`, from the cached set or (bounded) a fresh fetch."""
        key = self._cached(kid)
        if key is not None:
            return key
        async with self._lock:
            key = self._cached(kid)  # the fetch we waited for may have brought it
            if key is not None:
                return key
            wait = self._tried_at + self.cooldown_s - time.monotonic()
            if wait > 0:
                if self._failure is not None:
                    raise AuthUnavailable(self._failure, retry_after=wait)
                raise AuthError(f"invalid token: unknown signing key {kid!r}")
            self._tried_at = time.monotonic()
            return await self._fetch(kid)

    def _cached(self, kid: str) -> PyJWK | None:
        cache = self._client.jwk_set_cache
        keys = cache.get() if cache is not None else None  # memory only; None once expired
        if keys is None:
            return None
        for key in keys.keys:
            if key.key_id == kid and key.public_key_use in ("sig", None):
                return key
        return None

    async def _fetch(self, kid: str) -> PyJWK:
        where = f"the signing keys at {self.jwks_url}"
        try:
            # The thread cannot be cancelled; urllib's timeout ends it, this bounds our wait.
            async with asyncio.timeout(self.timeout_s + 1):
                key = await asyncio.to_thread(self._client.get_signing_key, kid)
        except (PyJWKClientConnectionError, TimeoutError) as exc:
            cause = exc.__cause__ or exc
            self._failure = f"cannot fetch {where}: {_reason(cause)}"
        except (PyJWKSetError, ValueError) as exc:
            self._failure = f"{where} are not a usable JWKS: {exc}"
        except PyJWKClientError as exc:
            if self._client.jwk_set_cache is None or self._client.jwk_set_cache.get() is None:
                self._failure = f"{where} are not a usable JWKS: {exc}"
            else:
                self._failure = None
                raise AuthError(f"invalid token: unknown signing key {kid!r}") from None
        else:
            self._failure = None
            return key
        log.error("OIDC: %s", self._failure)
        raise AuthUnavailable(self._failure, retry_after=self.cooldown_s)


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    text = str(reason if reason is not None else exc) or type(exc).__name__
    return text.strip("<>")
