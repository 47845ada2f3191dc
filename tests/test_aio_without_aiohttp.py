"""The async credential imports and works when aiohttp is not installed (azure-core's requests-in-a-thread)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    sys.modules["aiohttp"] = None  # as if the aio extra were not installed
    from msi_credential.aio import ManagedIdentityCredential
    from msi_credential.emulator import Emulator
    from msi_credential._transport.aio import aiohttp_available

    assert not aiohttp_available()

    async def main():
        for source in ("imds", "app_service", "azure_arc", "service_fabric"):
            with Emulator(source) as emulator:
                async with ManagedIdentityCredential(
                    _environ=emulator.environ, share_cache=False, **emulator.credential_kwargs
                ) as credential:
                    token = await credential.get_token("https://storage.azure.com/.default")
                    assert token.token
                print(source, "ok")
        with Emulator("service_fabric") as emulator:
            environ = dict(emulator.environ, IDENTITY_SERVER_THUMBPRINT=hashlib.sha1(b"x").hexdigest())
            async with ManagedIdentityCredential(_environ=environ, share_cache=False) as credential:
                try:
                    await credential.get_token("https://storage.azure.com/.default")
                except Exception as error:
                    print("pin", error.error_code, len(emulator.requests))

    asyncio.run(main())
    """
)


def test_async_credential_works_without_aiohttp() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "imds ok" in lines and "service_fabric ok" in lines and "azure_arc ok" in lines
    assert "pin thumbprint_mismatch 0" in lines
