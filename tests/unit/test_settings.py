"""The new edge settings: CORS origins, TLS and OIDC pairs, each bad value one line naming it."""

from __future__ import annotations

import pytest

from bus.errors import ConfigError
from bus.settings import load_settings


def test_cors_origins_are_a_comma_separated_list(monkeypatch):
    monkeypatch.setenv("GOVBUS_CORS_ORIGINS", " https://app.example ,http://localhost:3000,")
    assert load_settings().cors_origins == ("https://app.example", "http://localhost:3000")
    monkeypatch.delenv("GOVBUS_CORS_ORIGINS")
    assert load_settings().cors_origins == ()


@pytest.mark.parametrize(
    "value", ["*", "app.example", "https://app.example/", "https://app.example/path", "ftp://x"]
)
def test_a_bad_origin_is_one_line_naming_the_variable(value):
    with pytest.raises(ConfigError) as caught:
        load_settings(cors_origins=value)
    message = str(caught.value)
    assert message.startswith(f"GOVBUS_CORS_ORIGINS: {value!r} is not an origin"), message
    assert "\n" not in message


def test_empty_values_are_unset(monkeypatch):
    for name in ("GOVBUS_TLS_CERT", "GOVBUS_TLS_KEY", "GOVBUS_AUTH_JWKS_URL"):
        monkeypatch.setenv(name, "")
    settings = load_settings()
    assert settings.tls_cert is None and settings.tls_key is None
    assert settings.auth_jwks_url is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"tls_cert": "c"}, "GOVBUS_TLS_KEY: not set, but GOVBUS_TLS_CERT is (HTTPS needs both)"),
        ({"tls_key": "k"}, "GOVBUS_TLS_CERT: not set, but GOVBUS_TLS_KEY is (HTTPS needs both)"),
        ({"http": "nowhere"}, "GOVBUS_HTTP: must be HOST:PORT, e.g. 127.0.0.1:8080"),
    ],
)
def test_pairs_and_values_are_one_clean_line(overrides, message):
    with pytest.raises(ConfigError) as caught:
        load_settings(**overrides)
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("value", "up", "edge"),
    [
        (None, "127.0.0.1:8600", None),
        ("", "127.0.0.1:8600", None),
        (" OFF ", None, None),
        ("off", None, None),
        (" 0.0.0.0:53 ", "0.0.0.0:53", "0.0.0.0:53"),
    ],
)
def test_the_dns_address_of_govbus_up_and_of_an_edge(monkeypatch, value, up, edge):
    monkeypatch.delenv("GOVBUS_DNS", raising=False)
    if value is not None:
        monkeypatch.setenv("GOVBUS_DNS", value)
    settings = load_settings()
    assert settings.dns_address(embedded=True) == up
    assert settings.dns_address(embedded=False) == edge


@pytest.mark.parametrize("value", ["localhost", ":8600", "127.0.0.1:0", "127.0.0.1:70000"])
def test_a_bad_dns_address_is_one_line(monkeypatch, value):
    monkeypatch.setenv("GOVBUS_DNS", value)
    with pytest.raises(ConfigError, match=r"^GOVBUS_DNS: must be HOST:PORT .* or off$"):
        load_settings()
