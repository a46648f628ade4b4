"""HTTPS for the edge: `GOVBUS_TLS_CERT` and `GOVBUS_TLS_KEY`, checked before serving.

uvicorn loads the files itself when it starts; by then a mistake would be a traceback from
inside the server. `check_tls` reads them first and turns each way they can be wrong into one
line naming the variable.
"""

from __future__ import annotations

import datetime as dt
import logging
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from bus.errors import ConfigError

log = logging.getLogger(__name__)


def check_tls(cert: str, key: str) -> None:
    """Raise `ConfigError` naming the variable unless `cert` and `key` can serve HTTPS.

    `cert` is a PEM certificate chain (the server's certificate first), `key` its unencrypted
    PEM private key.
    """
    cert_pem = _read("GOVBUS_TLS_CERT", cert)
    key_pem = _read("GOVBUS_TLS_KEY", key)
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise ConfigError(f"GOVBUS_TLS_CERT: {cert} holds no PEM certificate") from None
    try:
        serialization.load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise ConfigError(
            f"GOVBUS_TLS_KEY: {key} is encrypted; give the key without a passphrase"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"GOVBUS_TLS_KEY: {key} holds no PEM private key") from None
    # What hypercorn will do: this is where a key that belongs to another certificate shows.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = exc.reason or str(exc)
        if "MISMATCH" in reason.upper():
            raise ConfigError(
                f"GOVBUS_TLS_KEY: {key} is not the key of the certificate in {cert}"
            ) from None
        raise ConfigError(f"GOVBUS_TLS_CERT: {cert} cannot serve TLS: {reason}") from None
    expires = chain[0].not_valid_after_utc
    if expires < dt.datetime.now(dt.UTC):
        log.warning("GOVBUS_TLS_CERT: %s expired on %s; clients will refuse it", cert, expires)


def _read(variable: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
