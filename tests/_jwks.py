"""A stand-in OpenID Connect provider: a real HTTP server on a free port serving a JWKS.

The test adds and removes keys (RSA for RS256, EC P-256 for ES256), mints tokens with them,
counts the fetches, and can make the endpoint fail (`mode`: "ok", "error", "junk", "hang").
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ISSUER = "https://idp.test/realms/govbus"
AUDIENCE = "govbus-edge"


class JwksServer:
    """Serves `/jwks` on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[str, Any]] = {}  # kid -> (algorithm, private key)
        self.published: set[str] = set()
        self.fetches = 0
        self.mode = "ok"
        self._release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                if server.mode == "hang":
                    server._release.wait(30)
                if server.mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                body = b"<html>not json</html>" if server.mode == "junk" else server.body()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._http.server_address[1]}/jwks"
        self._thread = threading.Thread(
            target=self._http.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(5)

    def release(self) -> None:
        """Let requests held by mode "hang" go on."""
        self._release.set()

    def add_key(self, kid: str, algorithm: str = "RS256", *, publish: bool = True) -> None:
        """Make a key; `publish` puts it in the JWKS (later: `publish_key`)."""
        if algorithm == "RS256":
            key: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        else:
            key = ec.generate_private_key(ec.SECP256R1())
        self._keys[kid] = (algorithm, key)
        if publish:
            self.published.add(kid)

    def publish_key(self, kid: str) -> None:
        self.published.add(kid)

    def body(self) -> bytes:
        keys = []
        for kid in sorted(self.published):
            algorithm, key = self._keys[kid]
            codec = RSAAlgorithm if algorithm == "RS256" else ECAlgorithm
            jwk = codec.to_jwk(key.public_key(), as_dict=True)
            jwk.update({"kid": kid, "use": "sig", "alg": algorithm})
            keys.append(jwk)
        return json.dumps({"keys": keys}).encode()

    def token(
        self,
        kid: str,
        *,
        scope: str | None = None,
        scp: list[str] | None = None,
        ttl_s: int = 300,
        header_kid: str | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with key `kid`; its header names `header_kid` (default: `kid`)."""
        algorithm, key = self._keys[kid]
        now = int(time.time())
        body: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "exp": now + ttl_s,
        }
        if scope is not None:
            body["scope"] = scope
        if scp is not None:
            body["scp"] = scp
        body.update(claims)
        named = kid if header_kid is None else header_kid
        headers = {"typ": "JWT", **({"kid": named} if named else {})}
        return jwt.encode(body, key, algorithm=algorithm, headers=headers)
