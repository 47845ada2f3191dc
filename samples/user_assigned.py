"""Choose a user-assigned managed identity by client id, object id or ARM resource id.

Run it:

    python samples/user_assigned.py

A resource can carry several user-assigned identities besides its system-assigned one; the credential's
``client_id`` (or ``object_id`` / ``resource_id``) keyword picks one. This sample runs against the built-in loopback
emulator of the App Service endpoint, configured with one user-assigned identity, so it needs no Azure and no
network. It shows which identity each credential got (the token's ``appid`` / ``oid`` claims, decoded without a
signature check) and that an identity the resource does not have is "unavailable" rather than a wrong token.
In Azure, drop the emulator and pass the client id of an identity assigned to your resource.
"""

from __future__ import annotations

import argparse
import os
import sys

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential
from msi_credential.emulator import Emulator, UserAssignedIdentity, decode_jwt

SCOPE = "https://vault.azure.net/.default"
IDENTITY = UserAssignedIdentity(
    client_id="0d3a6f0e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
    object_id="7e8f9a0b-1c2d-4e3f-8a5b-6c7d8e9f0a1b",
    resource_id="/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/samples"
    "/providers/Microsoft.ManagedIdentity/userAssignedIdentities/sample-identity",
)


def _describe(label: str, credential: ManagedIdentityCredential) -> None:
    with credential:
        claims = decode_jwt(credential.get_token(SCOPE).token)  # no signature check: for display only
    print(f"{label:<22} appid={claims['appid']}  oid={claims['oid']}")


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    ).parse_args(argv)
    with Emulator("app_service", identities=[IDENTITY]) as emulator:
        os.environ.update(emulator.environ)  # IDENTITY_ENDPOINT and IDENTITY_HEADER, as App Service sets them
        print(f"App Service emulator at {emulator.url} with user-assigned identity {IDENTITY.client_id}")

        _describe("system-assigned", ManagedIdentityCredential())
        _describe("client_id=...", ManagedIdentityCredential(client_id=IDENTITY.client_id))
        _describe("object_id=...", ManagedIdentityCredential(object_id=IDENTITY.object_id))
        _describe("resource_id=...", ManagedIdentityCredential(resource_id=IDENTITY.resource_id))

        stranger = "99999999-9999-9999-9999-999999999999"
        try:
            _describe("unknown client_id", ManagedIdentityCredential(client_id=stranger))
        except CredentialUnavailableError as error:
            print(f"{'unknown client_id':<22} unavailable ({error.error_code}), as expected")
        else:
            print("an unknown identity got a token: unexpected", file=sys.stderr)
            return 1
    print("user-assigned identity selected by client id, object id and resource id")
    return 0


if __name__ == "__main__":
    sys.exit(main())
