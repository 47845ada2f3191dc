"""A real azure-storage-blob client, sync and async, on our credential, against Azurite with OAuth checks.

The credential gets its tokens from the loopback emulator of each source; Azurite validates every bearer
token's issuer, audience and lifetime. One token serves the whole run of operations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from msi_credential.emulator import Emulator, decode_jwt

from .conftest import Azurite, async_credential, container_name, sync_credential

pytestmark = pytest.mark.e2e

SOURCES = ["imds", "app_service", "azure_arc"]
STORAGE_RESOURCE = "https://storage.azure.com"
ACCOUNT_AUDIENCE = "https://devstoreaccount1.blob.core.windows.net"
BLOBS = {
    "hello.txt": b"hello, managed identity\n",
    "nested/data.bin": bytes(range(256)) * 64,
}
CLIENT_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 30}


@pytest.fixture(params=SOURCES)
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(request.param) as running:
        yield running


def exercise_sync(service: Any) -> None:
    """Create a container, upload, list, download and delete blobs, then delete the container."""
    name = container_name()
    container = service.create_container(name)
    for blob, data in BLOBS.items():
        container.upload_blob(blob, data)
    assert sorted(item.name for item in container.list_blobs()) == sorted(BLOBS)
    for blob, data in BLOBS.items():
        assert container.download_blob(blob).readall() == data
    for blob in BLOBS:
        container.delete_blob(blob)
    assert list(container.list_blobs()) == []
    service.delete_container(name)
    assert name not in [item.name for item in service.list_containers()]


async def exercise_async(service: Any) -> None:
    """The same operations with the async client."""
    name = container_name()
    container = await service.create_container(name)
    for blob, data in BLOBS.items():
        await container.upload_blob(blob, data)
    assert sorted([item.name async for item in container.list_blobs()]) == sorted(BLOBS)
    for blob, data in BLOBS.items():
        downloader = await container.download_blob(blob)
        assert await downloader.readall() == data
    for blob in BLOBS:
        await container.delete_blob(blob)
    assert [item async for item in container.list_blobs()] == []
    await service.delete_container(name)
    assert name not in [item.name async for item in service.list_containers()]


def assert_one_token_for(emulator: Emulator, audience: str) -> None:
    assert emulator.tokens_issued == 1
    claims = decode_jwt(emulator.issued_tokens()[0])
    assert claims["aud"] == audience
    assert claims["iss"] == f"https://sts.windows.net/{emulator.tenant_id}/"
    token_requests = [request for request in emulator.requests if "resource" in request.query]
    assert {request.query["resource"] for request in token_requests} == {audience}


def test_sync_blob_client_round_trip(azurite: Azurite, emulator: Emulator) -> None:
    from azure.storage.blob import BlobServiceClient

    with sync_credential(emulator) as credential:
        assert credential.source.value == emulator.source.value
        with BlobServiceClient(
            azurite.account_url, credential=credential, connection_verify=azurite.ca_path, **CLIENT_TIMEOUTS
        ) as service:
            exercise_sync(service)
    assert_one_token_for(emulator, STORAGE_RESOURCE)


async def test_async_blob_client_round_trip(azurite: Azurite, emulator: Emulator) -> None:
    from azure.storage.blob.aio import BlobServiceClient

    async with async_credential(emulator) as credential:
        assert credential.source.value == emulator.source.value
        async with BlobServiceClient(
            azurite.account_url, credential=credential, connection_verify=azurite.ca_path, **CLIENT_TIMEOUTS
        ) as service:
            await exercise_async(service)
    assert_one_token_for(emulator, STORAGE_RESOURCE)


def test_account_specific_audience(azurite: Azurite) -> None:
    """``audience=`` makes the scope, hence the token's aud, the account's own: Azurite accepts it too."""
    from azure.storage.blob import BlobServiceClient

    with Emulator("imds") as emulator, sync_credential(emulator) as credential:
        with BlobServiceClient(
            azurite.account_url,
            credential=credential,
            connection_verify=azurite.ca_path,
            audience=ACCOUNT_AUDIENCE,
            **CLIENT_TIMEOUTS,
        ) as service:
            exercise_sync(service)
        assert_one_token_for(emulator, ACCOUNT_AUDIENCE)
