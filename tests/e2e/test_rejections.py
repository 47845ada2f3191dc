"""Rejections reach the user clearly: Azurite's reason in the SDK's error, and nothing retries or hangs.

Both the storage client and the credential have ``retry_total=0``: the storage SDK otherwise retries
authentication failures for over a minute.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import ClientAuthenticationError

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Emulator, Fault, mint_jwt

from .conftest import Azurite, async_credential, container_name, sync_credential

pytestmark = pytest.mark.e2e

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
E = TypeVar("E", bound=Exception)
NO_RETRIES: dict[str, Any] = {"retry_total": 0, "connection_timeout": 5, "read_timeout": 30}


def crafted_token(**overrides: Any) -> str:
    """An Entra v1-shaped token for storage, with some claims replaced."""
    now = int(time.time())
    claims = {
        "aud": "https://storage.azure.com",
        "iss": f"https://sts.windows.net/{TENANT}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + 3600,
        "oid": "00000000-0000-0000-0000-000000000001",
        "tid": TENANT,
    }
    claims.update(overrides)
    return mint_jwt(claims, b"not-checked-by-azurite")


def _wrong_audience() -> str:
    return crafted_token(aud="https://vault.azure.net")


def _expired() -> str:
    # The endpoint says it lives an hour (so our credential caches and uses it), the JWT says it expired.
    now = int(time.time())
    return crafted_token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)


def _v2_issuer() -> str:
    return crafted_token(iss=f"https://login.microsoftonline.com/{TENANT}/v2.0")


REJECTIONS = {
    "wrong_audience": (_wrong_audience, "Invalid token audience."),
    "expired": (_expired, "The token is expired."),
    "wrong_issuer": (_v2_issuer, "Invalid token issuer."),
}


def assert_rejected(error: ClientAuthenticationError, reason: str, emulator: Emulator) -> None:
    assert not isinstance(error, ManagedIdentityError)  # Azurite refused, not the credential
    assert error.status_code == 403
    assert error.error_code == "AuthenticationFailed"  # type: ignore[attr-defined]
    assert reason in str(error)
    assert len(emulator.requests) == 1  # one token request, no retry loop anywhere


def sync_create_container_error(azurite: Azurite, emulator: Emulator, expected: type[E]) -> E:
    """What a sync blob client on our sync credential, neither retrying, raises creating a container."""
    from azure.storage.blob import BlobServiceClient

    with (
        sync_credential(emulator, retry_total=0) as credential,
        BlobServiceClient(
            azurite.account_url, credential=credential, connection_verify=azurite.ca_path, **NO_RETRIES
        ) as service,
        pytest.raises(expected) as caught,
    ):
        service.create_container(container_name())
    return caught.value


async def async_create_container_error(azurite: Azurite, emulator: Emulator, expected: type[E]) -> E:
    """The same with the async client on our async credential."""
    from azure.storage.blob.aio import BlobServiceClient

    credential = async_credential(emulator, retry_total=0)
    service = BlobServiceClient(
        azurite.account_url, credential=credential, connection_verify=azurite.ca_path, **NO_RETRIES
    )
    async with credential, service:
        with pytest.raises(expected) as caught:
            await service.create_container(container_name())
    return caught.value


def script_token(emulator: Emulator, case: str) -> str:
    """The emulator answers with the case's crafted token; the reason Azurite gives for refusing it."""
    make_token, reason = REJECTIONS[case]
    emulator.script(Fault(200, {"access_token": make_token(), "expires_in": 3600}))
    return reason


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_sync_rejection_surfaces_azurite_reason(azurite: Azurite, case: str) -> None:
    with Emulator("imds") as emulator:
        reason = script_token(emulator, case)
        error = sync_create_container_error(azurite, emulator, ClientAuthenticationError)
        assert_rejected(error, reason, emulator)


@pytest.mark.parametrize("case", sorted(REJECTIONS))
async def test_async_rejection_surfaces_azurite_reason(azurite: Azurite, case: str) -> None:
    with Emulator("imds") as emulator:
        reason = script_token(emulator, case)
        error = await async_create_container_error(azurite, emulator, ClientAuthenticationError)
        assert_rejected(error, reason, emulator)


ENDPOINT_REFUSAL = Fault(403, {"statusCode": 403, "message": "Access denied by policy"})


def test_sync_endpoint_refusal_reaches_the_user_through_the_sdk(azurite: Azurite) -> None:
    """The managed identity endpoint refuses: the blob call raises our error, once, without a retry loop."""
    with Emulator("app_service") as emulator:
        emulator.script(ENDPOINT_REFUSAL)
        error = sync_create_container_error(azurite, emulator, ManagedIdentityError)
    assert error.status_code == 403
    assert error.source is not None and error.source.value == "app_service"
    assert "Access denied by policy" in str(error)
    assert len(emulator.requests) == 1


async def test_async_endpoint_refusal_reaches_the_user_through_the_sdk(azurite: Azurite) -> None:
    with Emulator("app_service") as emulator:
        emulator.script(ENDPOINT_REFUSAL)
        error = await async_create_container_error(azurite, emulator, ManagedIdentityError)
    assert error.status_code == 403
    assert "Access denied by policy" in str(error)
    assert len(emulator.requests) == 1
