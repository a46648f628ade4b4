"""`amqps://`: TLS to RabbitMQ from the URL's `cafile`, `certfile` and `keyfile` parameters.

aiormq reads these parameters too, but builds its context only while connecting, where a
missing file or a bad PEM surfaces as "cannot reach the broker". govbus builds the context
itself (in a thread: it reads files) and names the parameter that is wrong.

- `cafile`: the CA certificates that sign the broker's certificate (default: the system's);
- `certfile` (and `keyfile`, unless the key is in the same file): a client certificate, for
  brokers that want one (`ssl_options.fail_if_no_peer_cert`);
- `no_verify_ssl=1` (aiormq's name, kept): no certificate or host name check. Testing only.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from bus.errors import ConfigError

log = logging.getLogger(__name__)

FILE_PARAMS = ("cafile", "certfile", "keyfile")


def check_query(scheme: str, query: dict[str, str]) -> None:
    """Raise `ConfigError` for TLS parameters that cannot work (no file is read here)."""
    given = [name for name in FILE_PARAMS if name in query]
    if given and scheme != "amqps":
        raise ConfigError(f"GOVBUS_URL: {given[0]} is for TLS: use amqps://")
    for name in given:
        if not query[name].strip():
            raise ConfigError(f"GOVBUS_URL: {name} is empty")
    if "keyfile" in query and "certfile" not in query:
        raise ConfigError("GOVBUS_URL: keyfile needs certfile (the client certificate)")


def tls_context(url: str) -> ssl.SSLContext:
    """The client TLS context `url` asks for. Blocking (reads files): run it in a thread.

    Raises `ConfigError` naming GOVBUS_URL and the parameter, never showing the password.
    """
    query = dict(parse_qsl(urlsplit(url).query))
    for name in FILE_PARAMS:
        if name in query:
            _readable(name, query[name])
    cafile = query.get("cafile")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    except ssl.SSLError as exc:
        raise ConfigError(
            f"GOVBUS_URL: cafile {cafile} holds no usable CA certificate: {_reason(exc)}"
        ) from None
    certfile, keyfile = query.get("certfile"), query.get("keyfile")
    if certfile is not None:
        try:
            context.load_cert_chain(certfile, keyfile)
        except ssl.SSLError as exc:
            if "MISMATCH" in _reason(exc).upper():
                raise ConfigError(
                    f"GOVBUS_URL: keyfile {keyfile} is not the key of certfile {certfile}"
                ) from None
            raise ConfigError(
                f"GOVBUS_URL: certfile {certfile} / keyfile {keyfile or certfile}: not a PEM "
                f"certificate and its unencrypted key: {_reason(exc)}"
            ) from None
    if query.get("no_verify_ssl", "0") != "0":
        log.warning("GOVBUS_URL: no_verify_ssl is set: the broker's certificate is not checked")
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def tls_failure(exc: BaseException, *, client_cert: bool) -> str | None:
    """What went wrong in a TLS handshake, if `exc` (or what it wraps) says so."""
    seen: BaseException | None = exc
    visited: set[int] = set()
    reset = False
    while seen is not None and id(seen) not in visited:  # exception chains can loop
        visited.add(id(seen))
        if isinstance(seen, ssl.SSLCertVerificationError):
            return (
                f"TLS: the broker's certificate is not trusted ({seen.verify_message}); "
                "check cafile and the host name"
            )
        if isinstance(seen, ssl.SSLError):
            return f"TLS handshake failed: {_reason(seen)}"
        reset = reset or isinstance(seen, ConnectionResetError) or "reset" in str(seen)
        seen = seen.__cause__ or seen.__context__
    if reset and not client_cert:
        # TLS 1.3: a broker that wants a client certificate says so in an alert that races
        # with our first write, so what we usually see is a reset.
        return (
            "the broker closed the TLS connection at once; if it wants a client certificate, "
            "give certfile and keyfile"
        )
    return None


def _readable(name: str, path: str) -> None:
    try:
        with Path(path).open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"GOVBUS_URL: {name} {path}: cannot read it: {exc.strerror or exc}"
        ) from None


def _reason(exc: ssl.SSLError) -> str:
    return str(exc.reason or exc.strerror or exc)
