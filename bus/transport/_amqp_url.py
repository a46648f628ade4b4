"""The URL of an AMQP broker: checked, given govbus' default heartbeat, and what a failed
connection to it says (naming user and address, never the password)."""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import aiormq.exceptions as amqp_exc

from bus.errors import BrokerUnreachable, ConfigError, ConnectionLost, LoginRefused
from bus.transport._tls import check_query, tls_failure

DEFAULT_HEARTBEAT_S = 10


def normalize_url(url: str) -> str:
    """Validate an AMQP URL and give it govbus' default heartbeat when it names none."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps") or not parts.hostname:
        raise ConfigError(
            f"GOVBUS_URL must look like amqp://user:pass@host:5672/vhost, got {url!r}"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError(f"GOVBUS_URL has a bad port: {url!r}") from exc
    query = dict(parse_qsl(parts.query))
    check_query(parts.scheme, query)
    query.setdefault("heartbeat", str(DEFAULT_HEARTBEAT_S))
    return urlunsplit(parts._replace(query=urlencode(query)))


def split_nodes(url: str) -> list[str]:
    """The nodes of `GOVBUS_URL`: one AMQP URL, or several separated by commas (the nodes of
    one RabbitMQ cluster), each checked and normalized."""
    nodes = [part.strip() for part in url.split(",")]
    if not all(nodes):
        raise ConfigError(f"GOVBUS_URL lists an empty node URL: {url!r}")
    return [normalize_url(node) for node in nodes]


def where(url: str) -> str:
    """`scheme://host:port/vhost` of a node: what logs and errors may show (no password)."""
    parts = urlsplit(url)
    port = parts.port or (5671 if parts.scheme == "amqps" else 5672)
    return f"{parts.scheme}://{parts.hostname}:{port}{parts.path or '/'}"


def connect_error(url: str, exc: BaseException) -> ConnectionLost:
    """Why a connection could not be made, naming user and address (never the password)."""
    parts = urlsplit(url)
    node = where(url)
    user = unquote(parts.username or "guest")
    # Before Connection.OpenOk: RabbitMQ closes with ACCESS_REFUSED on bad credentials
    # (aiormq: ProbableAuthenticationError), with NOT_ALLOWED on a vhost the user may not open
    # (aiormq: a Connection.Close where it expected OpenOk).
    if isinstance(exc, amqp_exc.ProbableAuthenticationError):
        return LoginRefused(
            f"authentication failed: the broker at {node} refused user {user!r} "
            "(ACCESS_REFUSED: wrong user name or password)"
        )
    if isinstance(exc, amqp_exc.InvalidFrameError) and "Connection.Close" in str(exc):
        vhost = unquote(parts.path[1:]) or "/"
        return LoginRefused(
            f"the broker at {node} did not let user {user!r} open vhost {vhost!r} "
            "(NOT_ALLOWED: no such vhost, or no permission on it)"
        )
    tls = None
    if parts.scheme == "amqps":
        tls = tls_failure(exc, client_cert="certfile" in parts.query)
    reason = tls or exc or type(exc).__name__
    return BrokerUnreachable(f"cannot reach the broker at {node}: {reason}")
