"""Authorize Azure SDK requests with the credential: read a Key Vault secret from a local stand-in.

Run it:

    python samples/key_vault.py

Azure SDK clients authorize every request through azure-core's ``BearerTokenCredentialPolicy``, which asks the
credential for a token (and reuses it until it needs refreshing). This sample builds that pipeline with an
azure-core ``PipelineClient`` and sends Key Vault's "get secret" request to a tiny Key Vault stand-in on
127.0.0.1, which accepts a bearer token only when its audience is Key Vault. The token comes from
ManagedIdentityCredential pointed at the built-in loopback emulator of the Azure VM endpoint (IMDS): no Azure,
no network, nothing leaves this machine. In Azure the same credential goes to ``SecretClient(vault_url,
credential)`` from azure-keyvault-secrets, over HTTPS, without the ``enforce_https`` override used here.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from azure.core import PipelineClient
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest

from msi_credential import ManagedIdentityCredential
from msi_credential.emulator import Emulator

KEY_VAULT_SCOPE = "https://vault.azure.net/.default"
KEY_VAULT_AUDIENCE = "https://vault.azure.net"
SECRETS = {"db-password": "correct-horse-battery-staple (a sample value)"}


def _audience(authorization: str) -> str | None:
    """The ``aud`` claim of a bearer JWT. A stand-in only: real Key Vault also checks signature, issuer, expiry."""
    scheme, _, token = authorization.partition(" ")
    parts = token.split(".")
    if scheme.lower() != "bearer" or len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    audience = claims.get("aud") if isinstance(claims, dict) else None
    return audience if isinstance(audience, str) else None


class KeyVaultStandIn(BaseHTTPRequestHandler):
    """Answers ``GET /secrets/<name>?api-version=...`` like Key Vault, for a token whose audience is Key Vault."""

    def do_GET(self) -> None:
        name = self.path.split("?", 1)[0].rstrip("/").rpartition("/secrets/")[2]
        if _audience(self.headers.get("Authorization", "")) != KEY_VAULT_AUDIENCE:
            self._answer(401, {"error": {"code": "Unauthorized", "message": "a Key Vault token is required"}})
        elif name not in SECRETS:
            self._answer(404, {"error": {"code": "SecretNotFound", "message": f"no secret named {name}"}})
        else:
            vault = f"http://{self.headers.get('Host', '127.0.0.1')}"
            self._answer(200, {"value": SECRETS[name], "id": f"{vault}/secrets/{name}/1", "attributes": {}})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sample prints what matters."""


def _read_secret(credential: ManagedIdentityCredential, vault_url: str, scope: str) -> tuple[int, Any]:
    """One "get secret" request through an azure-core pipeline that authorizes with ``credential``."""
    client: PipelineClient[HttpRequest, Any] = PipelineClient(
        vault_url,
        policies=[BearerTokenCredentialPolicy(credential, scope)],
        # use_env_settings=False: no HTTP(S)_PROXY, so the request stays on this machine.
        transport=RequestsTransport(use_env_settings=False),
    )
    with client:
        url = client.format_url("/secrets/{name}", name="db-password")
        request = HttpRequest("GET", url, params={"api-version": "7.4"})
        # BearerTokenCredentialPolicy refuses to send a token over plain http, rightly: anyone on the path could
        # take it. The stand-in is plain http on loopback, so this sample, and only because it stays on
        # loopback, turns that check off for its request. Never do this for a remote URL.
        response = client.send_request(request, enforce_https=False)
        return response.status_code, response.json()


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    ).parse_args(argv)
    vault = ThreadingHTTPServer(("127.0.0.1", 0), KeyVaultStandIn)
    threading.Thread(target=vault.serve_forever, daemon=True).start()
    vault_url = f"http://127.0.0.1:{vault.server_address[1]}"
    try:
        with Emulator("imds") as emulator:
            os.environ.update(emulator.environ)  # the credential finds the emulator as it would find IMDS
            print(f"Key Vault stand-in at {vault_url}; IMDS emulator at {emulator.url}")
            with ManagedIdentityCredential() as credential:
                status, body = _read_secret(credential, vault_url, KEY_VAULT_SCOPE)
                if status != 200:
                    print(f"the Key Vault stand-in answered {status}: {body}", file=sys.stderr)
                    return 1
                print(f"secret db-password = {body['value']!r}")

                # A token for another audience does not open the vault.
                status, body = _read_secret(credential, vault_url, "https://storage.azure.com/.default")
                if status != 401:
                    print(f"a Storage token was not refused: {status}", file=sys.stderr)
                    return 1
                print(f"with a Storage token instead: {status} {body['error']['code']}, as expected")
    finally:
        vault.shutdown()
        vault.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
