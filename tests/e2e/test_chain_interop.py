"""Our credential inside azure-identity's credential chains, sync and async.

azure-identity's chains move on only past their own ``CredentialUnavailableError``: when managed identity is
unavailable here ours is also an instance of that class (azure-identity being imported), so the chain moves on;
when managed identity answers, the chain returns our token; when the endpoint refuses, the chain stops with our
error. A subprocess checks that msi_credential never imports azure-identity itself.
"""

from __future__ import annotations

import os
import sys
import textwrap
from typing import Any

import azure.identity
import azure.identity.aio
import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport

import msi_credential
from msi_credential import ManagedIdentityError
from msi_credential.emulator import Emulator, Fault

from ..chain_fallback import AsyncFallbackCredential, FallbackCredential
from ..subprocesses import child_environment, run
from .conftest import LOOPBACK_GUARD, async_credential, sync_credential

pytestmark = pytest.mark.e2e

SCOPE = "https://vault.azure.net/.default"
IDENTITY_NOT_FOUND = Fault(400, {"error": "invalid_request", "error_description": "Identity not found"})
REFUSED = Fault(403, {"statusCode": 403, "message": "Access denied by policy", "correlationId": "c-42"})
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class UnreachableTransport(HttpTransport):  # type: ignore[type-arg]
    """A transport on a machine off Azure: no connection can be made (nothing is actually sent)."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.urls.append(request.url)
        raise ServiceRequestError("connection refused (simulated: not on Azure)")

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> UnreachableTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


def test_unavailable_error_is_azure_identity_class() -> None:
    with Emulator("imds") as emulator, sync_credential(emulator, retry_total=0) as credential:
        emulator.script(IDENTITY_NOT_FOUND)
        with pytest.raises(azure.identity.CredentialUnavailableError) as caught:
            credential.get_token(SCOPE)
    assert isinstance(caught.value, msi_credential.CredentialUnavailableError)
    assert caught.value.error_code == "identity_not_found"


@pytest.mark.parametrize("method", ["get_token", "get_token_info"])
def test_chain_moves_on_when_identity_not_assigned(method: str) -> None:
    fallback = FallbackCredential()
    with Emulator("imds") as emulator, sync_credential(emulator, retry_total=0) as credential:
        emulator.script(IDENTITY_NOT_FOUND)
        chain = azure.identity.ChainedTokenCredential(credential, fallback)
        token = getattr(chain, method)(SCOPE)
    assert token.token == FallbackCredential.TOKEN
    assert fallback.calls == 1
    assert len(emulator.requests) == 1


def test_chain_moves_on_when_imds_is_unreachable() -> None:
    """Off Azure: no variables, IMDS does not answer: unavailable at once, the chain moves on."""
    from msi_credential import ManagedIdentityCredential

    transport = UnreachableTransport()
    fallback = FallbackCredential()
    sleeps: list[float] = []
    with ManagedIdentityCredential(
        _environ={}, share_cache=False, transport=transport, _sleep=sleeps.append
    ) as credential:
        chain = azure.identity.ChainedTokenCredential(credential, fallback)
        token = chain.get_token(SCOPE)
    assert token.token == FallbackCredential.TOKEN
    assert fallback.calls == 1
    assert len(transport.urls) == 1  # first contact fails fast: no retry
    assert sleeps == []  # and no wait before moving on
    assert transport.urls[0].startswith("http://169.254.169.254/metadata/identity/oauth2/token?")


def test_default_azure_credential_style_chain() -> None:
    """Environment (unconfigured here), then managed identity (ours), then a developer credential."""
    fallback = FallbackCredential()
    with Emulator("app_service") as emulator, sync_credential(emulator) as credential:
        chain = azure.identity.ChainedTokenCredential(
            azure.identity.EnvironmentCredential(), credential, fallback
        )
        token = chain.get_token(SCOPE)
        assert token.token == emulator.issued_tokens()[0]
        assert fallback.calls == 0
        # Not assigned: the same chain shape moves on past managed identity to the developer credential.
        emulator.script(
            Fault(400, {"statusCode": 400, "message": "Unable to load the proper Managed Identity."})
        )
        other_resource = chain.get_token("https://management.azure.com/.default")
    assert other_resource.token == FallbackCredential.TOKEN
    assert fallback.calls == 1


@pytest.mark.parametrize("source", ["imds", "app_service", "azure_arc"])
def test_chain_returns_our_token_when_available(source: str) -> None:
    fallback = FallbackCredential()
    with Emulator(source) as emulator, sync_credential(emulator) as credential:
        chain = azure.identity.ChainedTokenCredential(credential, fallback)
        token = chain.get_token(SCOPE)
        info = chain.get_token_info(SCOPE)
    assert token.token == info.token == emulator.issued_tokens()[0]
    assert emulator.tokens_issued == 1
    assert fallback.calls == 0


def test_chain_stops_with_our_error_when_the_endpoint_refuses() -> None:
    fallback = FallbackCredential()
    with Emulator("app_service") as emulator, sync_credential(emulator, retry_total=0) as credential:
        emulator.script(REFUSED)
        chain = azure.identity.ChainedTokenCredential(credential, fallback)
        with pytest.raises(ClientAuthenticationError) as caught:
            chain.get_token(SCOPE)
    assert not isinstance(caught.value, azure.identity.CredentialUnavailableError)
    assert "Access denied by policy" in caught.value.message
    assert "ManagedIdentityCredential" in caught.value.message
    assert fallback.calls == 0


async def test_async_chain_moves_on_returns_and_stops() -> None:
    fallback = AsyncFallbackCredential()
    with Emulator("imds") as emulator:
        async with async_credential(emulator, retry_total=0) as credential:
            chain = azure.identity.aio.ChainedTokenCredential(credential, fallback)
            ours = await chain.get_token(SCOPE)
            assert ours.token == emulator.issued_tokens()[0]
            assert fallback.calls == 0

            emulator.script(IDENTITY_NOT_FOUND)
            moved_on = await chain.get_token("https://management.azure.com/.default")
            assert moved_on.token == AsyncFallbackCredential.TOKEN
            assert fallback.calls == 1

            emulator.script(Fault(500, {"error": "server_error", "error_description": "IMDS is on fire"}))
            with pytest.raises(ClientAuthenticationError) as caught:
                await chain.get_token("https://graph.microsoft.com/.default")
            assert not isinstance(caught.value, azure.identity.CredentialUnavailableError)
            assert "IMDS is on fire" in caught.value.message
            assert fallback.calls == 1


async def test_async_unavailable_error_is_azure_identity_class() -> None:
    with Emulator("imds") as emulator:
        async with async_credential(emulator, retry_total=0) as credential:
            emulator.script(IDENTITY_NOT_FOUND)
            with pytest.raises(azure.identity.CredentialUnavailableError) as caught:
                await credential.get_token(SCOPE)
    assert isinstance(caught.value, ManagedIdentityError)


# Runs in a fresh interpreter (this test process has imported azure.identity already), behind LOOPBACK_GUARD.
_WITHOUT_AZURE_IDENTITY = textwrap.dedent(
    """
    import asyncio, sys

    import msi_credential
    from msi_credential import CredentialUnavailableError, ManagedIdentityCredential
    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    scope = "https://storage.azure.com/.default"
    with ManagedIdentityCredential(share_cache=False) as credential:
        assert credential.get_token(scope).token
        assert credential.get_token_info(scope).token

    async def main():
        async with AsyncCredential(share_cache=False) as credential:
            return (await credential.get_token(scope)).token
    assert asyncio.run(main())

    unknown = "00000000-0000-0000-0000-00000000beef"  # not assigned: the endpoint says "Identity not found"
    try:
        ManagedIdentityCredential(client_id=unknown, share_cache=False, retry_total=0).get_token(scope)
    except CredentialUnavailableError as error:
        unavailable = error
    else:
        raise AssertionError("expected CredentialUnavailableError")
    assert type(unavailable) is CredentialUnavailableError, type(unavailable).__mro__
    assert unavailable.error_code == "identity_not_found", unavailable.error_code
    loaded = sorted(name for name in sys.modules if name == "azure.identity" or name.startswith("azure.identity."))
    assert not loaded, loaded

    import azure.identity  # the application starts using azure-identity: now ours is also its class
    try:
        ManagedIdentityCredential(client_id=unknown, share_cache=False, retry_total=0).get_token(scope)
    except azure.identity.CredentialUnavailableError as error:
        assert isinstance(error, CredentialUnavailableError)
    else:
        raise AssertionError("expected azure.identity.CredentialUnavailableError")
    print("ok")
    """
)


def test_msi_credential_never_imports_azure_identity() -> None:
    with Emulator("imds") as emulator:
        environment = child_environment(
            {**emulator.environ, "PYTHONPATH": REPO_ROOT},
            drop_prefixes=("IDENTITY_", "MSI_", "IMDS_", "AZURE_"),
        )
        result = run(
            [sys.executable, "-c", LOOPBACK_GUARD + _WITHOUT_AZURE_IDENTITY], env=environment, timeout=60
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "ok"
        assert emulator.tokens_issued == 2  # sync and async; the unknown identity got none
