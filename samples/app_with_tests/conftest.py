"""The application's test fixtures: a Key Vault stand-in on https://127.0.0.1. The managed identity endpoint comes
from msi-credential's pytest plugin (the ``msi_emulator`` fixture): nothing to set up here for it."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from azure.core.pipeline.transport import RequestsTransport

from msi_credential.emulator import decode_jwt

SECRETS = {"db-password": "correct-horse-battery-staple (a test value)"}


class Vault:
    """Key Vault's GET /secrets/<name>: 401 with Key Vault's challenge without a token, the secret with a token for
    Key Vault of the challenge's tenant."""

    def __init__(self, tenant_id: str, ca_file: Path) -> None:
        self.tenant_id = tenant_id
        self.ca_file = ca_file
        self.tokens: list[str] = []  # the bearer tokens the application presented
        self.url = ""

    def options(self) -> dict[str, Any]:
        """SecretClient options for this stand-in (in production: none)."""
        return {
            "verify_challenge_resource": False,  # the stand-in is 127.0.0.1, not <name>.vault.azure.net
            "transport": RequestsTransport(use_env_settings=False, connection_verify=str(self.ca_file)),
        }


def _handler(vault: Vault) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            scheme, _, token = self.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not token:
                challenge = (
                    f'Bearer authorization="https://login.microsoftonline.com/{vault.tenant_id}", '
                    'resource="https://vault.azure.net"'
                )
                return self._answer(401, {"error": {"code": "Unauthorized"}}, challenge)
            claims = decode_jwt(token)
            if claims.get("aud") != "https://vault.azure.net" or claims.get("tid") != vault.tenant_id:
                return self._answer(401, {"error": {"code": "Unauthorized", "message": "wrong audience"}})
            vault.tokens.append(token)
            name = self.path.split("?", 1)[0].rstrip("/").rpartition("/")[2]
            if name not in SECRETS:
                return self._answer(404, {"error": {"code": "SecretNotFound", "message": name}})
            self._answer(
                200, {"value": SECRETS[name], "id": f"{vault.url}/secrets/{name}/1", "attributes": {}}
            )

        def _answer(self, status: int, body: dict[str, Any], challenge: str = "") -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if challenge:
                self.send_header("WWW-Authenticate", challenge)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def vault(tmp_path: Path) -> Iterator[Vault]:
    authority = trustme.CA()
    ca_file = tmp_path / "vault-ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    stand_in = Vault("72f988bf-86f1-41af-91ab-2d7cd011db47", ca_file)  # the emulator's default tenant
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    stand_in.url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield stand_in
    server.shutdown()
    server.server_close()
