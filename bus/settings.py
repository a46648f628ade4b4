"""Configuration from `GOVBUS_*` environment variables; CLI flags of the same meaning override.

A bad value is one line naming the variable (`ConfigError`), never a traceback.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bus.errors import ConfigError

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"


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

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("amqp", "amqps", "memory"):
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
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error["loc"] else "?"
        raise ConfigError(f"GOVBUS_{field.upper()}: {error['msg']}") from None
