"""Read a Key Vault secret with azure-keyvault-secrets' SecretClient and the managed identity credential.

Run it:

    python samples/key_vault.py

Key Vault's client authenticates differently from storage's: its first request goes out without a token, the vault
answers 401 with a challenge (``WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
resource="https://vault.azure.net"``), and the client then asks the credential for the scope the challenge names,
with the challenge's tenant and continuous access evaluation (CAE) on. When the vault later revokes the token, it
answers with a CAE claims challenge and the client asks for a fresh token with those claims.

Everything here stays on this machine: a small Key Vault stand-in on https://127.0.0.1 (it speaks that challenge
protocol and accepts only a token for Key Vault from the challenge's tenant), and ManagedIdentityCredential pointed
at the built-in loopback emulator of the Azure VM endpoint (IMDS). In Azure the code is just
``SecretClient("https://<name>.vault.azure.net", ManagedIdentityCredential())``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from msi_credential import ManagedIdentityCredential
from msi_credential.emulator import Emulator, decode_jwt

try:  # the client library and the CA maker this sample needs besides msi-credential: say which, not a traceback
    import trustme
    from azure.keyvault.secrets import SecretClient
except ModuleNotFoundError as missing:
    if not (missing.name or "").startswith(("azure.keyvault", "trustme")):
        raise
    print(
        f"key_vault.py: {missing}: pip install azure-keyvault-secrets trustme (the dev extra has both)",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

VAULT_RESOURCE = "https://vault.azure.net"
SECRETS = {"db-password": "correct-horse-battery-staple (a sample value)"}
# A certificate authority made for this run (trustme, the emulator extra) and the stand-in's 127.0.0.1 certificate.
AUTHORITY = trustme.CA(organization_name="key vault sample (this run only)")


class KeyVaultStandIn(BaseHTTPRequestHandler):
    """``GET /secrets/<name>`` with Key Vault's challenge protocol. A stand-in: no signature or expiry checks."""

    tenant_id = ""
    revoked: set[str] = set()

    def do_GET(self) -> None:
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        challenge = f'Bearer authorization="https://login.microsoftonline.com/{self.tenant_id}", resource="{VAULT_RESOURCE}"'
        if scheme.lower() != "bearer" or not token:
            return self._answer(401, {"error": {"code": "Unauthorized"}}, challenge)
        if token in self.revoked:
            claims = base64.b64encode(b'{"access_token":{"nbf":{"essential":true,"value":"1726258122"}}}')
            cae = (
                'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
                f'error="insufficient_claims", claims="{claims.decode("ascii")}"'
            )
            return self._answer(401, {"error": {"code": "Unauthorized", "message": "token revoked"}}, cae)
        try:
            claims_of_token = decode_jwt(token)
        except ValueError:
            return self._answer(401, {"error": {"code": "Unauthorized"}}, challenge)
        if claims_of_token.get("aud") != VAULT_RESOURCE or claims_of_token.get("tid") != self.tenant_id:
            return self._answer(
                401, {"error": {"code": "Unauthorized", "message": "wrong audience or tenant"}}, challenge
            )
        name = self.path.split("?", 1)[0].rstrip("/").rpartition("/secrets/")[2].split("/")[0]
        if name not in SECRETS:
            return self._answer(
                404, {"error": {"code": "SecretNotFound", "message": f"no secret named {name}"}}
            )
        vault = f"https://{self.headers.get('Host', '127.0.0.1')}"
        self._answer(200, {"value": SECRETS[name], "id": f"{vault}/secrets/{name}/1", "attributes": {}})

    def _answer(self, status: int, body: dict[str, Any], challenge: str | None = None) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if challenge:
            self.send_header("WWW-Authenticate", challenge)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sample prints what matters."""


def start_vault(tenant_id: str) -> ThreadingHTTPServer:
    KeyVaultStandIn.tenant_id = tenant_id
    server = ThreadingHTTPServer(("127.0.0.1", 0), KeyVaultStandIn)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    AUTHORITY.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    ).parse_args(argv)
    with Emulator("imds") as emulator, tempfile.TemporaryDirectory() as directory:
        ca_file = os.path.join(directory, "ca.pem")
        AUTHORITY.cert_pem.write_to_path(ca_file)
        vault = start_vault(emulator.tenant_id)
        vault_url = f"https://127.0.0.1:{vault.server_address[1]}"
        try:
            os.environ.update(emulator.environ)  # the credential finds the emulator as it would find IMDS
            print(f"Key Vault stand-in at {vault_url}; IMDS emulator at {emulator.url}")
            with (
                ManagedIdentityCredential() as credential,
                SecretClient(
                    vault_url,
                    credential,
                    # The client checks that the challenge's resource (vault.azure.net) matches the vault's host
                    # (<name>.vault.azure.net). The stand-in is 127.0.0.1, so this sample, and only because it stays on
                    # loopback, turns that check off. Never do this for a vault URL you did not write yourself.
                    verify_challenge_resource=False,
                    # no HTTP(S)_PROXY (the request stays on this machine); trust this run's CA
                    transport=RequestsTransport(use_env_settings=False, connection_verify=ca_file),
                ) as client,
            ):
                for _ in range(3):
                    secret = client.get_secret("db-password")
                print(f"secret db-password = {secret.value!r}")
                print(f"token requests the emulator received: {emulator.tokens_issued} (for 3 reads)")
                claims = decode_jwt(emulator.issued_tokens()[0])
                print(f"token audience {claims['aud']}, tenant {claims['tid']}: the challenge's")

                KeyVaultStandIn.revoked.update(emulator.issued_tokens())  # the vault revokes it: CAE
                secret = client.get_secret("db-password")
                print(
                    f"after a CAE claims challenge: read again with a fresh token "
                    f"(token requests: {emulator.tokens_issued})"
                )
                if emulator.tokens_issued != 2 or secret.value != SECRETS["db-password"]:
                    print("the claims challenge was not answered as expected", file=sys.stderr)
                    return 1
        finally:
            vault.shutdown()
            vault.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
