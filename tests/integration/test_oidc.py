"""Tokens from an OpenID Connect provider (`GOVBUS_AUTH_JWKS_URL`, `_ISSUER`, `_AUDIENCE`),
checked against a real JWKS endpoint on a free port: RS256 and ES256 keys by `kid`, rotation,
the refetch bound, every refusal, and the HTTP answers of the edge."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator

import jwt
import pytest

from bus.errors import ConfigError
from bus.settings import load_settings
from http_edge import Authenticator, mint_token
from http_edge.auth import AuthError, AuthUnavailable
from http_edge.oidc import OidcVerifier
from tests._edge_stack import SECRET, edge_stack
from tests._jwks import AUDIENCE, ISSUER, JwksServer
from tests._wait import eventually

PROBLEM = "application/problem+json"


@pytest.fixture
def idp() -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.add_key("rsa-1", "RS256")
        server.add_key("ec-1", "ES256")
        yield server


def oidc_auth(idp: JwksServer, *, local: bool = True, **kwargs) -> Authenticator:
    verifier = OidcVerifier(idp.url, issuer=ISSUER, audience=AUDIENCE, **kwargs)
    return Authenticator(True, "HS256", SECRET if local else b"", oidc=verifier)


def bearer(token: str) -> str:
    return f"Bearer {token}"


async def test_rs256_and_es256_tokens_by_kid_with_scope_or_scp(idp):
    auth = Authenticator.from_settings(
        load_settings(auth_jwks_url=idp.url, auth_issuer=ISSUER, auth_audience=AUDIENCE)
    )
    rs = idp.token("rsa-1", scope="registry:read resources:read")
    assert await auth.scopes(bearer(rs)) == {"registry:read", "resources:read"}
    es = idp.token("ec-1", scp=["events:read", "registry:write"])
    assert await auth.scopes(bearer(es)) == {"events:read", "registry:write"}
    assert idp.fetches == 1  # the second key came from the cached set


async def test_govbus_own_tokens_still_work_beside_the_provider(idp):
    auth = Authenticator.from_settings(
        load_settings(
            auth_secret=SECRET, auth_jwks_url=idp.url, auth_issuer=ISSUER, auth_audience=AUDIENCE
        )
    )
    own = mint_token(["resources:write"], secret=SECRET)
    assert await auth.scopes(bearer(own)) == {"resources:write"}
    assert await auth.scopes(bearer(idp.token("rsa-1", scope="events:read"))) == {"events:read"}
    assert idp.fetches == 1  # govbus' token never asked the provider


async def test_a_rotated_key_is_picked_up(idp):
    auth = oidc_auth(idp, cooldown_s=0)
    assert await auth.scopes(bearer(idp.token("rsa-1", scope="registry:read")))
    idp.add_key("rsa-2", "RS256")  # the provider rotates: a new kid appears in its JWKS
    assert await auth.scopes(bearer(idp.token("rsa-2", scope="registry:write"))) == {
        "registry:write"
    }
    assert idp.fetches == 2
    # and a key the provider withdrew stops working once the set is fetched again
    idp.published.discard("rsa-1")
    idp.add_key("rsa-3", "RS256")
    await auth.scopes(bearer(idp.token("rsa-3", scope="registry:read")))
    with pytest.raises(AuthError, match="unknown signing key 'rsa-1'"):
        await auth.scopes(bearer(idp.token("rsa-1", scope="registry:read")))


async def test_a_flood_of_unknown_kids_costs_the_provider_one_fetch_per_cooldown(idp):
    auth = oidc_auth(idp, cooldown_s=60)
    await auth.scopes(bearer(idp.token("rsa-1", scope="registry:read")))
    forged = [idp.token("rsa-1", header_kid=secrets.token_hex(8)) for _ in range(200)]
    results = await asyncio.gather(
        *(auth.scopes(bearer(t)) for t in forged), return_exceptions=True
    )
    assert all(isinstance(r, AuthError) and "unknown signing key" in str(r) for r in results)
    assert idp.fetches == 1


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda idp: idp.token("rsa-1", aud="someone-else"), "Audience doesn't match"),
        (lambda idp: idp.token("ec-1", ttl_s=-120), "token expired"),
        (lambda idp: idp.token("rsa-1", exp=None), "exp"),
        (lambda idp: idp.token("other", header_kid="rsa-1"), "Signature verification failed"),
        (lambda idp: idp.token("rsa-1", header_kid="ec-1"), "algorithm"),
        (lambda idp: idp.token("rsa-1", scope=["registry:read"]), "scope claim must be a string"),
        (lambda idp: idp.token("rsa-1", scp=[1, 2]), "scp claim must be a list of strings"),
        (
            lambda idp: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                "k" * 32,  # an HMAC token naming an RSA key: never checked as HMAC
                algorithm="HS256",
                headers={"kid": "rsa-1"},
            ),
            "algorithm must be one of RS256, ES256",
        ),
        (
            lambda idp: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
                None,
                algorithm="none",
                headers={"kid": "rsa-1"},
            ),
            "algorithm must be one of",
        ),
        (lambda idp: idp.token("rsa-1", header_kid=""), "names no signing key"),
    ],
)
async def test_refusals_are_auth_errors(idp, make, needle):
    idp.add_key("other", "RS256", publish=False)
    auth = oidc_auth(idp)
    with pytest.raises(AuthError, match=needle):
        await auth.scopes(bearer(make(idp)))


async def test_another_issuer_is_refused(idp):
    token = idp.token("rsa-1", iss="https://evil.example", scope="registry:read")
    with pytest.raises(AuthError, match=re.escape(f"not issued by {ISSUER}")):
        await oidc_auth(idp, local=False).scopes(bearer(token))
    with pytest.raises(AuthError, match="invalid token"):  # nor does govbus' own key take it
        await oidc_auth(idp, local=True).scopes(bearer(token))
    assert idp.fetches == 0


async def test_a_fetch_runs_off_the_event_loop(idp):
    auth = oidc_auth(idp, timeout_s=3, cooldown_s=0)
    cached = bearer(idp.token("rsa-1", scope="registry:read"))
    await auth.scopes(cached)
    idp.mode = "hang"
    idp.add_key("rsa-2", "RS256")
    fetching = asyncio.ensure_future(auth.scopes(bearer(idp.token("rsa-2"))))
    await eventually(lambda: idp.fetches == 2, what="the provider holding the fetch")
    # meanwhile the loop serves: a token whose key is cached is checked at once
    assert await auth.scopes(cached) == {"registry:read"}
    assert not fetching.done()
    idp.mode = "ok"
    idp.release()
    assert await fetching == frozenset()


@pytest.mark.parametrize("mode", ["down", "error", "junk", "hang"])
async def test_an_unreachable_jwks_is_unavailable_at_once_not_a_hang(idp, mode):
    auth = oidc_auth(idp, timeout_s=0.5, cooldown_s=60)
    token = bearer(idp.token("rsa-1", scope="registry:read"))
    if mode == "down":
        idp.__exit__()
    else:
        idp.mode = mode
    with pytest.raises(AuthUnavailable, match=re.escape(f"signing keys at {idp.url}")) as caught:
        await asyncio.wait_for(auth.scopes(token), 5)
    assert caught.value.retry_after > 0
    fetches = idp.fetches
    # within the cooldown the next tokens get the same answer without another fetch
    for _ in range(20):
        with pytest.raises(AuthUnavailable):
            await asyncio.wait_for(auth.scopes(token), 1)
    assert idp.fetches == fetches


async def test_the_provider_recovering_is_picked_up_after_the_cooldown(idp):
    auth = oidc_auth(idp, timeout_s=0.5, cooldown_s=0)
    token = bearer(idp.token("rsa-1", scope="registry:read"))
    idp.mode = "error"
    with pytest.raises(AuthUnavailable):
        await auth.scopes(token)
    idp.mode = "ok"
    assert await auth.scopes(token) == {"registry:read"}


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"auth_jwks_url": "http://idp/jwks"}, "GOVBUS_AUTH_ISSUER: not set"),
        ({"auth_jwks_url": "http://idp/jwks", "auth_issuer": "x"}, "GOVBUS_AUTH_AUDIENCE: not set"),
        ({"auth_issuer": "x", "auth_audience": "y"}, "GOVBUS_AUTH_JWKS_URL: not set"),
        ({"auth_jwks_url": "file:///etc/passwd"}, "GOVBUS_AUTH_JWKS_URL: must be an https://"),
        (
            {"auth_jwks_url": "http://idp/jwks", "auth_issuer": "govbus", "auth_audience": "y"},
            "GOVBUS_AUTH_ISSUER: 'govbus' is govbus' own issuer",
        ),
    ],
)
def test_bad_oidc_settings_name_the_variable(overrides, needle):
    with pytest.raises(ConfigError) as caught:
        Authenticator.from_settings(load_settings(**overrides))
    assert str(caught.value).startswith(needle), caught.value


# --- through the edge: statuses, problem+json and challenges --------------------------------


@pytest.fixture
async def stack(tmp_path, unique, idp):
    auth = oidc_auth(idp, timeout_s=0.5, cooldown_s=0)
    async with edge_stack(f"memory://{unique}", tmp_path, workers=("discovery",), auth=auth) as s:
        yield s


async def test_the_edge_answers_200_401_403_and_503(stack, idp):
    c = stack.client
    good = {"Authorization": bearer(idp.token("ec-1", scope="registry:read"))}
    r = await c.get("/v1/services", headers=good)
    assert r.status_code == 200, await r.get_data()

    wrong_aud = {"Authorization": bearer(idp.token("rsa-1", aud="x", scope="registry:read"))}
    r = await c.get("/v1/services", headers=wrong_aud)
    assert r.status_code == 401 and r.content_type == PROBLEM
    assert r.headers["WWW-Authenticate"].startswith('Bearer realm="govbus", error="invalid_token"')

    r = await c.get("/v1/services", headers={"Authorization": bearer(idp.token("rsa-1"))})
    assert r.status_code == 403 and r.content_type == PROBLEM
    assert 'error="insufficient_scope"' in r.headers["WWW-Authenticate"]

    idp.mode = "error"
    idp.add_key("rsa-9", "RS256")  # a kid the edge has not seen: it must ask the provider
    r = await c.get("/v1/services", headers={"Authorization": bearer(idp.token("rsa-9"))})
    assert r.status_code == 503 and r.content_type == PROBLEM
    body = await r.get_json()
    assert "cannot fetch the signing keys" in body["detail"] and int(r.headers["Retry-After"]) > 0
    # keys it already holds keep working while the provider is down
    r = await c.get("/v1/services", headers=good)
    assert r.status_code == 200
