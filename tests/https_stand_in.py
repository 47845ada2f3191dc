"""Loopback HTTPS servers for the integration tests: a scripted service and a Key Vault stand-in.

Both run a real TLS server on 127.0.0.1 with a certificate from a throwaway trustme CA, record every request
(with the bearer token, so tests can compare it, never print it), and answer from a small handler.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlsplit

from msi_credential.emulator import decode_jwt


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str] = field(repr=False)
    body: bytes = field(repr=False)

    @property
    def bearer(self) -> Optional[str]:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)


class Tls:
    """A throwaway CA and one server certificate for loopback plus the given host names."""

    def __init__(self, *names: str) -> None:
        import trustme

        self.directory = Path(tempfile.mkdtemp(prefix="msi-stand-in-tls-"))
        authority = trustme.CA()
        leaf = authority.issue_cert("127.0.0.1", "localhost", *names)
        self.ca_path = str(self.directory / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_path)
        self.cert_path = str(self.directory / "cert.pem")
        self.key_path = str(self.directory / "key.pem")
        Path(self.cert_path).write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(self.key_path)

    def cleanup(self) -> None:
        for path in self.directory.iterdir():
            path.unlink()
        self.directory.rmdir()


class HttpsServer:
    """Serves ``handler(call) -> Answer`` over HTTPS on a free loopback port until ``stop()``."""

    def __init__(self, tls: Tls, handler: Callable[[Call], Answer]) -> None:
        self.tls = tls
        self.handler = handler
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    body = self._chunked()
                split = urlsplit(self.path)
                call = Call(
                    self.command,
                    split.path,
                    dict(parse_qsl(split.query)),
                    {key.lower(): value for key, value in self.headers.items()},
                    body,
                )
                with server._lock:
                    server.calls.append(call)
                answer = server.handler(call)
                payload = answer.body
                if isinstance(payload, (dict, list)):
                    data = json.dumps(payload).encode("utf-8")
                    content_type = "application/json; charset=utf-8"
                else:
                    data = payload if isinstance(payload, bytes) else str(payload or "").encode("utf-8")
                    content_type = "text/plain; charset=utf-8"
                self.send_response(answer.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _chunked(self) -> bytes:
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()

            do_GET = do_PUT = do_POST = do_DELETE = do_PATCH = _any

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_path, tls.key_path)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def claims_challenge(claims: str) -> str:
    """A CAE ``insufficient_claims`` challenge as Entra-protected services send it."""
    encoded = base64.b64encode(claims.encode("utf-8")).decode("ascii")
    return (
        'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
        f'error="insufficient_claims", claims="{encoded}"'
    )


CAE_CLAIMS = '{"access_token":{"nbf":{"essential":true,"value":"1726258122"}}}'


class KeyVaultStandIn:
    """Key Vault's challenge protocol and a secrets store, behind an HttpsServer.

    A request without a bearer token gets the 401 challenge naming the tenant and the vault resource. A token is
    accepted only when its ``aud`` is the vault resource and its ``tid`` is the challenge's tenant. ``revoke()``
    makes the server answer the tokens seen so far with a CAE claims challenge, as Key Vault does once a token is
    revoked; a token requested afterwards is accepted.
    """

    RESOURCE = "https://vault.azure.net"

    def __init__(self, tls: Tls, tenant_id: str, *, vault_host: Optional[str] = None) -> None:
        self.tenant_id = tenant_id
        self.secrets: dict[str, tuple[str, str]] = {}  # name -> (version, value)
        self.revoked: set[str] = set()
        self.accepted: list[str] = []
        self.server = HttpsServer(tls, self._handle)
        self.vault_url = f"https://{vault_host}" if vault_host else self.server.url

    @property
    def calls(self) -> list[Call]:
        return self.server.calls

    def revoke(self, tokens: Iterable[str]) -> None:
        self.revoked.update(tokens)

    def challenge(self) -> str:
        return (
            f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", '
            f'resource="{self.RESOURCE}"'
        )

    def _refuse(self, message: str) -> Answer:
        return Answer(
            401,
            {"error": {"code": "Unauthorized", "message": message}},
            {"WWW-Authenticate": self.challenge()},
        )

    def _handle(self, call: Call) -> Answer:
        token = call.bearer
        if token is None:
            return self._refuse("AKV10000: Request is missing a Bearer or PoP token.")
        if token in self.revoked:
            return Answer(
                401,
                {"error": {"code": "Unauthorized", "message": "the token has been revoked"}},
                {"WWW-Authenticate": claims_challenge(CAE_CLAIMS)},
            )
        try:
            claims = decode_jwt(token)
        except ValueError:
            return self._refuse("AKV10000: the token is not a JWT")
        if claims.get("aud") != self.RESOURCE:
            return self._refuse(f"AKV10022: Invalid audience. Expected {self.RESOURCE}")
        if claims.get("tid") != self.tenant_id:
            return self._refuse("AKV10032: Invalid issuer: the token's tenant is not the vault's")
        self.accepted.append(token)
        return self._secrets(call)

    def _secrets(self, call: Call) -> Answer:
        parts = [part for part in call.path.split("/") if part]
        if len(parts) < 2 or parts[0] != "secrets":
            return Answer(400, {"error": {"code": "BadParameter", "message": "unsupported path"}})
        name = parts[1]
        if call.method == "PUT":
            value = json.loads(call.body or b"{}").get("value", "")
            version = uuid.uuid4().hex
            self.secrets[name] = (version, value)
            return Answer(200, self._bundle(name))
        if call.method == "GET" and name in self.secrets:
            return Answer(200, self._bundle(name))
        return Answer(
            404,
            {"error": {"code": "SecretNotFound", "message": f"A secret with (name) {name} was not found"}},
        )

    def _bundle(self, name: str) -> dict[str, Any]:
        version, value = self.secrets[name]
        return {
            "value": value,
            "id": f"{self.vault_url}/secrets/{name}/{version}",
            "attributes": {
                "enabled": True,
                "created": 1700000000,
                "updated": 1700000000,
                "recoveryLevel": "Purgeable",
            },
        }

    def stop(self) -> None:
        self.server.stop()
