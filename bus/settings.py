"""Configuration from `GOVBUS_*` environment variables; CLI flags of the same meaning override.

A bad value is one line naming the variable (`ConfigError`), never a traceback.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bus.errors import ConfigError
from bus.validation import field_errors

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
DEFAULT_DNS = "127.0.0.1:8600"  # Consul's DNS port: `govbus up`'s DNS interface
OWN_ISSUER = "govbus"  # the `iss` of the tokens govbus mints itself


_DNS_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


class Settings(BaseSettings):
    """What every govbus process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="GOVBUS_", extra="ignore")

    url: str | None = Field(default=None, description="the bus: amqp://, amqps:// or memory://")
    db: str = Field(
        default="sqlite+aiosqlite:///./govbus.db", description="SQLAlchemy URL of the store"
    )
    http: str = Field(default="127.0.0.1:8080", description="edge listen address host:port")
    auth_secret: str | None = None
    auth_public_key: str | None = None
    auth: Literal["required", "disabled"] = "required"
    auth_jwks_url: str | None = Field(
        default=None, description="JWKS of an OAuth 2 / OpenID Connect provider"
    )
    auth_issuer: str | None = Field(default=None, description="the provider's `iss`")
    auth_audience: str | None = Field(default=None, description="the `aud` its tokens carry")
    tls_cert: str | None = Field(default=None, description="PEM certificate chain: edge on HTTPS")
    tls_key: str | None = Field(default=None, description="PEM private key of GOVBUS_TLS_CERT")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="origins allowed to call the edge from a browser"
    )
    dns: str | None = Field(
        default=None,
        description="DNS interface address host:port (UDP and TCP); `govbus up`: 127.0.0.1:8600",
    )
    dns_domain: str = Field(
        default="consul", description="the DNS domain of the Consul-compatible interface"
    )
    datacenter: str = Field(
        default="dc1", description="datacenter name of the Consul-compatible interfaces"
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        nodes = [node.strip() for node in value.split(",")]
        if not all(nodes):
            raise ValueError("lists an empty node URL (two commas, or a trailing one)")
        schemes = {urlsplit(node).scheme for node in nodes}
        if len(nodes) > 1 and not schemes <= {"amqp", "amqps"}:
            raise ValueError("a list of nodes (comma-separated) must be amqp:// or amqps:// URLs")
        if not schemes <= {"amqp", "amqps", "memory"}:
            raise ValueError("must start with amqp://, amqps:// or memory://")
        return value

    @field_validator("db")
    @classmethod
    def _check_db(cls, value: str) -> str:
        if not value.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ValueError(
                "must be sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB"
            )
        return value

    @field_validator("http")
    @classmethod
    def _check_http(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT, e.g. 127.0.0.1:8080")
        return value

    @field_validator("dns", mode="before")
    @classmethod
    def _check_dns(cls, value: object) -> object:
        text = "" if value is None else str(value).strip()
        if not text:
            return None
        if text.lower() == "off":
            return "off"  # no DNS interface, also for `govbus up`
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be HOST:PORT (e.g. 127.0.0.1:8600) or off")
        return text

    @field_validator("dns_domain", "datacenter")
    @classmethod
    def _check_label(cls, value: str) -> str:
        labels = value.strip(".").split(".")
        if not all(_DNS_LABEL.fullmatch(label) for label in labels):
            raise ValueError("must be DNS labels (letters, digits, '-'), e.g. consul or dc1")
        return value.strip(".").lower()

    @field_validator(
        "auth_jwks_url", "auth_issuer", "auth_audience", "tls_cert", "tls_key", mode="before"
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `GOVBUS_TLS_CERT=` in an env file means "not set", not "a file named ''".
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("auth_jwks_url")
    @classmethod
    def _check_jwks_url(cls, value: str | None) -> str | None:
        if value is not None and (
            urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname
        ):
            raise ValueError("must be an https:// (or http://) URL of the provider's JWKS")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for origin in value:
            parts = urlsplit(origin)
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or parts.path
                or parts.query
                or parts.fragment
                or parts.username is not None
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: list scheme://host[:port] "
                    "(e.g. https://app.example.com), separated by commas"
                )
        return value

    @model_validator(mode="after")
    def _check_pairs(self) -> Self:
        # Both halves or neither: half a TLS or OIDC configuration is a mistake, never a mode.
        if (self.tls_cert is None) != (self.tls_key is None):
            missing = "GOVBUS_TLS_KEY" if self.tls_key is None else "GOVBUS_TLS_CERT"
            other = "GOVBUS_TLS_CERT" if self.tls_key is None else "GOVBUS_TLS_KEY"
            raise ValueError(f"{missing}: not set, but {other} is (HTTPS needs both)")
        if self.auth_issuer == OWN_ISSUER:
            raise ValueError(f"GOVBUS_AUTH_ISSUER: {OWN_ISSUER!r} is govbus' own issuer")
        if self.auth_jwks_url is not None:
            for name, value in (("ISSUER", self.auth_issuer), ("AUDIENCE", self.auth_audience)):
                if not value:
                    raise ValueError(
                        f"GOVBUS_AUTH_{name}: not set, but GOVBUS_AUTH_JWKS_URL is "
                        "(tokens from the provider are checked against both)"
                    )
        elif self.auth_issuer or self.auth_audience:
            raise ValueError(
                "GOVBUS_AUTH_JWKS_URL: not set, but GOVBUS_AUTH_ISSUER/GOVBUS_AUTH_AUDIENCE are"
            )
        return self

    def dns_address(self, *, embedded: bool) -> str | None:
        """`GOVBUS_DNS`, else 127.0.0.1:8600 for `govbus up` and none for `govbus edge`;
        `off`: none."""
        if self.dns == "off":
            return None
        return self.dns or (DEFAULT_DNS if embedded else None)

    def bus_url(self, *, embedded: bool) -> str:
        """`GOVBUS_URL`, else `memory://` for `govbus up` and local RabbitMQ for one component."""
        return self.url or ("memory://" if embedded else DEFAULT_AMQP_URL)


def load_settings(**overrides: object) -> Settings:
    """Read the environment; `overrides` (CLI flags) win.

    Raises `ConfigError` naming the variable.
    """
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = field_errors(exc, whole="")[0]
        if not first["field"]:  # a check across variables: its message names them
            raise ConfigError(first["message"]) from None
        variable = "GOVBUS_" + first["field"].split(".")[0].upper()
        raise ConfigError(f"{variable}: {first['message']}") from None
