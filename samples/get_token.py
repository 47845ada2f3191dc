"""Get an access token with ManagedIdentityCredential and show where it came from and when it expires.

Run it:

    python samples/get_token.py

On a machine without managed identity (no IDENTITY_ENDPOINT, MSI_ENDPOINT, ... variables) it starts the built-in
loopback emulator of the Azure VM endpoint (IMDS) in-process, says so, and points the credential at it through
AZURE_POD_IDENTITY_AUTHORITY_HOST: it needs no Azure and no network. Where those variables are set (App Service,
Functions, Container Apps, Cloud Shell, Azure ML, Service Fabric, Azure Arc, pods), or with ``--real`` (an Azure VM,
where IMDS needs no variables), it asks the real endpoint. The token itself is never printed.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone

from msi_credential import ManagedIdentityCredential, ManagedIdentityError

SCOPE = "https://storage.azure.com/.default"
MANAGED_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
)


def _when(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{moment} (in {int(epoch - time.time())} s)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None, allow_abbrev=False
    )
    parser.add_argument(
        "--real",
        action="store_true",
        help="ask the real endpoint even when no managed identity variable is set (an Azure VM's IMDS)",
    )
    real = parser.parse_args(argv).real
    emulator = None
    if not real and not any(os.environ.get(name) for name in MANAGED_IDENTITY_VARIABLES):
        from msi_credential.emulator import Emulator

        emulator = Emulator("imds").start()
        os.environ.update(emulator.environ)  # what `msi-credential emulate` prints as export lines
        print(f"no managed identity variables set: using the local IMDS emulator at {emulator.url}")
    try:
        with ManagedIdentityCredential() as credential:
            print(f"source:     {credential.source.value}")
            info = credential.get_token_info(SCOPE)
    except ManagedIdentityError as error:
        print(f"no token ({error.error_code}): {error}", file=sys.stderr)
        return 1
    finally:
        if emulator is not None:
            emulator.stop()
    print(f"got a {info.token_type} token for {SCOPE} ({len(info.token)} characters, not shown)")
    print(f"expires:    {_when(info.expires_on)}")
    if info.refresh_on is not None:
        print(f"refresh at: {_when(info.refresh_on)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
