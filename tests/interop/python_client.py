"""Gets tokens with one Python managed identity client, configured only by the environment, and prints one JSON line
per case: the claims that matter (never the token). Run as a subprocess by test_interop.py.

    python python_client.py CLIENT RESOURCE [CLIENT_ID ...]   ("-" for the system-assigned identity)

CLIENT: azure-identity, azure-identity-async, msal, msi-credential. A guard refuses (and reports on stderr) any
connection that would leave loopback.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import ipaddress
import json
import socket
import sys
from typing import Any, Callable, Optional

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
    def check(sock: socket.socket, address: Any) -> None:
        CONNECTS[0] += 1
        if not _loopback(address, sock.family):
            CONNECTS[0] -= 1
            print(f"{GUARD_MARK} {address!r}", file=sys.stderr, flush=True)
            raise ConnectionRefusedError(f"interop guard: no connection off loopback ({address!r})")

    def guarded(original: Any) -> Any:
        """``socket.socket.connect`` or ``connect_ex`` that checks the address first."""

        def method(sock: socket.socket, address: Any) -> Any:
            check(sock, address)
            return original(sock, address)

        return method

    for name in ("connect", "connect_ex"):
        setattr(socket.socket, name, guarded(getattr(socket.socket, name)))


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


def sync_credential(module: str) -> Callable[[str, Optional[str]], dict[str, Any]]:
    """A client: the sync ManagedIdentityCredential of ``module`` (azure-identity's or ours)."""

    def get_token(resource: str, client_id: Optional[str]) -> dict[str, Any]:
        credential_class = importlib.import_module(module).ManagedIdentityCredential
        try:
            with credential_class(client_id=client_id) as credential:
                return outcome(credential.get_token(resource + "/.default").token)
        except Exception as error:
            return outcome(None, error)

    return get_token


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


CLIENTS = {
    "azure-identity": sync_credential("azure.identity"),
    "azure-identity-async": azure_identity_async,
    "msal": msal_python,
    "msi-credential": sync_credential("msi_credential"),
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
