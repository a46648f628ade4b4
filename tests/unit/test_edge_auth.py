"""Edge tokens: HS256 and RS256, scopes, refusals; the error table."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bus.errors import (
    BusError,
    CircuitOpen,
    Conflict,
    DeadlineExceeded,
    Invalid,
    NoResponder,
    NotFound,
    Unavailable,
)
from bus.settings import load_settings
from http_edge import ERROR_STATUS, Authenticator, mint_token
from http_edge.auth import AuthError
from http_edge.problems import from_bus_error
from tests._wait import eventually

SECRET = "unit-secret-" + "u" * 32


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    folder = tmp_path_factory.mktemp("keys")
    (folder / "private.pem").write_bytes(private)
    (folder / "public.pem").write_bytes(public)
    return folder / "private.pem", folder / "public.pem"


async def test_hs256_round_trip_and_scopes():
    auth = Authenticator.from_settings(load_settings(auth_secret=SECRET))
    token = mint_token(["registry:read", "events:read"], secret=SECRET)
    assert await auth.scopes(f"Bearer {token}") == {"registry:read", "events:read"}


async def test_rs256_with_a_public_key_file(rsa_keys):
    private, public = rsa_keys
    auth = Authenticator.from_settings(load_settings(auth_public_key=str(public)))
    token = mint_token(["resources:write"], private_key=private.read_bytes())
    assert await auth.scopes(f"Bearer {token}") == {"resources:write"}
    # an HS256 token signed with the public key as secret (algorithm confusion) is refused
    confused = jwt.encode(
        {"iss": "govbus", "exp": int(time.time()) + 60, "scope": "resources:write"},
        SECRET,
        algorithm="HS256",
    )
    with pytest.raises(AuthError):
        await auth.scopes(f"Bearer {confused}")


def test_govbus_token_with_a_private_key_prints_the_token_alone(rsa_keys):
    private, public = rsa_keys
    govbus = str(Path(sys.executable).with_name("govbus"))
    out = subprocess.run(
        [govbus, "token", "--scope", "events:read", "--ttl", "60", "--private-key", str(private)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.count("\n") == 1
    claims = jwt.decode(out.strip(), public.read_bytes(), algorithms=["RS256"], issuer="govbus")
    assert claims["scope"] == "events:read" and 0 < claims["exp"] - time.time() <= 60


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({}, "GOVBUS_AUTH_SECRET"),
        ({"auth_secret": "short"}, "at least 32"),
        ({"auth_public_key": "/nonexistent.pem"}, "GOVBUS_AUTH_PUBLIC_KEY"),
    ],
)
def test_bad_auth_configuration_names_the_variable(overrides, needle, monkeypatch):
    for name in ("GOVBUS_AUTH_SECRET", "GOVBUS_AUTH_PUBLIC_KEY", "GOVBUS_AUTH"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ValueError, match=needle):
        Authenticator.from_settings(load_settings(**overrides))


def test_a_public_key_that_is_not_one_is_a_config_error(tmp_path):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a key")
    with pytest.raises(ValueError, match="GOVBUS_AUTH_PUBLIC_KEY"):
        Authenticator.from_settings(load_settings(auth_public_key=str(junk)))


async def test_disabled_auth_is_a_warning_and_grants_everything(caplog):
    with caplog.at_level(logging.WARNING):
        auth = Authenticator.from_settings(load_settings(auth="disabled"))
    assert "GOVBUS_AUTH=disabled" in caplog.text
    assert "events:read" in await auth.scopes(None)


def test_one_table_maps_bus_errors_to_statuses():
    cases: list[tuple[BusError, int]] = [
        (NotFound("x"), 404),
        (Invalid("x", {"errors": [{"field": "name", "message": "bad"}]}), 422),
        (Conflict("x"), 409),
        (Unavailable("x"), 503),
        (NoResponder("x"), 503),
        (CircuitOpen("x", retry_after=2.5), 503),
        (DeadlineExceeded("x"), 504),
    ]
    for error, status in cases:
        problem = from_bus_error(error)
        assert problem.status == status, error
        assert ("Retry-After" in problem.headers) == (status == 503)
    assert from_bus_error(CircuitOpen("x", retry_after=2.5)).headers["Retry-After"] == "3"
    assert from_bus_error(cases[1][0]).errors == [{"field": "name", "message": "bad"}]
    assert all(status in (404, 409, 422, 502, 503, 504) for _, status, _ in ERROR_STATUS)


@pytest.mark.parametrize(
    ("token", "says"),
    [
        ("bad", "invalid token: not a JWT (header.payload.signature, each base64url)"),
        ("abc.def.ghi", "invalid token: not a JWT (header.payload.signature, each base64url)"),
        (
            mint_token(["registry:read"], secret="another-secret-" + "x" * 32),
            "invalid token: the signature does not match (made with another key?)",
        ),
    ],
)
async def test_a_bad_token_is_refused_in_words_not_in_decoder_details(token, says):
    auth = Authenticator.from_settings(load_settings(auth_secret=SECRET))
    with pytest.raises(AuthError) as caught:
        await auth.scopes(f"Bearer {token}")
    assert str(caught.value) == says


async def test_a_token_seen_before_is_not_checked_again_until_it_expires():
    auth = Authenticator.from_settings(load_settings(auth_secret=SECRET))
    token = mint_token(["registry:read"], ttl_s=2, secret=SECRET)
    assert await auth.scopes(f"Bearer {token}") == {"registry:read"}
    assert await auth.scopes(f"Bearer {token}") == {"registry:read"}  # remembered
    assert len(auth._verified) == 1
    # A token refused is never remembered; one remembered still expires at its `exp`.
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(AuthError):
        await auth.scopes(f"Bearer {forged}")
    assert list(auth._verified) == [token]

    async def refused() -> str | None:
        try:
            await auth.scopes(f"Bearer {token}")
        except AuthError as exc:
            return str(exc)
        return None

    assert await eventually(refused, timeout=5, what="the token to expire") == "token expired"
