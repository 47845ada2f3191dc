"""Gets tokens with one Python managed identity client, configured only by the environment, and prints one JSON line
per case: the claims that matter (never the token). Run as a subprocess by test_interop.py.

    python python_client.py CLIENT RESOURCE [CLIENT_ID ...]   ("-" for the system-assigned identity)

CLIENT: azure-identity, azure-identity-async, msal, msi-credential. A guard refuses (and reports on stderr) any
connection that would leave loopback.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import socket
import sys
from typing import Any, Optional

GUARD_MARK = "INTEROP-GUARD-REFUSED"


def _loopback(address: Any, family: int) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return str(host) == "localhost"


CONNECTS = [0]  # loopback connections let through: proves the clients' connections pass this guard


def install_guard() -> None:
    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        CONNECTS[0] += 1
        if not _loopback(address, sock.family):
            CONNECTS[0] -= 1
            print(f"{GUARD_MARK} {address!r}", file=sys.stderr, flush=True)
            raise ConnectionRefusedError(f"interop guard: no connection off loopback ({address!r})")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return connect_ex(sock, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = guarded_connect_ex  # type: ignore[method-assign]


def claims_of(token: str) -> Optional[dict[str, Any]]:
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def outcome(token: Optional[str], error: Optional[BaseException] = None, detail: str = "") -> dict[str, Any]:
    if token is None:
        message = detail or (f"{type(error).__name__}: {error}" if error is not None else "no token")
        return {"ok": False, "error": message[:400]}
    claims = claims_of(token)
    if claims is None:
        return {"ok": False, "error": "the access token is not a JWT"}
    return {"ok": True, "aud": claims.get("aud"), "appid": claims.get("appid")}


def azure_identity_sync(resource: str, client_id: Optional[str]) -> dict[str, Any]:
    from azure.identity import ManagedIdentityCredential

    try:
        with ManagedIdentityCredential(client_id=client_id) as credential:
            return outcome(credential.get_token(resource + "/.default").token)
    except Exception as error:
        return outcome(None, error)


def azure_identity_async(resource: str, client_id: Optional[str]) -> dict[str, Any]:
    from azure.identity.aio import ManagedIdentityCredential

    async def get() -> dict[str, Any]:
        try:
            async with ManagedIdentityCredential(client_id=client_id) as credential:
                return outcome((await credential.get_token(resource + "/.default")).token)
        except Exception as error:
            return outcome(None, error)

    return asyncio.run(get())


def msal_python(resource: str, client_id: Optional[str]) -> dict[str, Any]:
    import msal
    import requests

    identity: Any = (
        msal.UserAssignedManagedIdentity(client_id=client_id)
        if client_id
        else msal.SystemAssignedManagedIdentity()
    )
    try:
        with requests.Session() as session:
            client = msal.ManagedIdentityClient(identity, http_client=session)
            result = client.acquire_token_for_client(resource=resource)
    except Exception as error:
        return outcome(None, error)
    if "access_token" in result:
        return outcome(result["access_token"])
    return outcome(None, detail=f"{result.get('error')}: {result.get('error_description')}")


def msi_credential(resource: str, client_id: Optional[str]) -> dict[str, Any]:
    from msi_credential import ManagedIdentityCredential

    try:
        with ManagedIdentityCredential(client_id=client_id) as credential:
            return outcome(credential.get_token(resource + "/.default").token)
    except Exception as error:
        return outcome(None, error)


CLIENTS = {
    "azure-identity": azure_identity_sync,
    "azure-identity-async": azure_identity_async,
    "msal": msal_python,
    "msi-credential": msi_credential,
}


def main(argv: list[str]) -> int:
    client, resource, *identities = argv
    install_guard()
    for identity in identities or ["-"]:
        result = CLIENTS[client](resource, None if identity == "-" else identity)
        print(json.dumps({"identity": identity, **result}), flush=True)
    print(f"INTEROP-GUARD-CONNECTS {CONNECTS[0]}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
