"""Get tokens with the async credential, msi_credential.aio.ManagedIdentityCredential.

Run it:

    python samples/async_get_token.py

It starts ten concurrent ``get_token`` calls for one scope: they share one request to the endpoint (and the
cached token afterwards). On a machine without managed identity variables it uses the built-in loopback
emulator of the Azure VM endpoint (IMDS) in-process, says so, and counts the requests it received; with those
variables set, or with ``--real`` (an Azure VM), it asks the real endpoint. The token itself is never printed.
The async credential uses aiohttp when installed (``pip install "msi-credential[aio]"``) and works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

from msi_credential import ManagedIdentityError
from msi_credential.aio import ManagedIdentityCredential

SCOPE = "https://management.azure.com/.default"
CALLERS = 10
MANAGED_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
)


async def fetch() -> int:
    async with ManagedIdentityCredential() as credential:
        print(f"source:   {credential.source.value}")
        tokens = await asyncio.gather(*(credential.get_token(SCOPE) for _ in range(CALLERS)))
    if len({token.token for token in tokens}) != 1:
        print("concurrent callers got different tokens: unexpected", file=sys.stderr)
        return 1
    print(f"{CALLERS} concurrent get_token calls -> one token ({len(tokens[0].token)} characters, not shown)")
    print(f"expires:  in {int(tokens[0].expires_on - time.time())} s")
    return 0


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
        os.environ.update(emulator.environ)
        print(f"no managed identity variables set: using the local IMDS emulator at {emulator.url}")
    try:
        code = asyncio.run(fetch())
    except ManagedIdentityError as error:
        print(f"no token ({error.error_code}): {error}", file=sys.stderr)
        return 1
    finally:
        if emulator is not None:
            emulator.stop()
    if emulator is not None:
        print(f"token requests the emulator received: {len(emulator.requests)}")
    return code


if __name__ == "__main__":
    sys.exit(main())
