"""azure-storage-blob, azure-storage-queue and azure-data-tables, sync and async, on our credential, against Azurite
with OAuth: one body per check, parametrised per storage service (and per source of the emulator).

The credential gets its tokens from the loopback emulator of each source. Azurite 3.37.0 (``--oauth basic``,
HTTPS) checks every bearer token's issuer, lifetime and audience for blobs, queues and tables alike, in its
token authenticators (installed by ``npm ci``): each service accepts the audiences ``https://storage.azure.com``
and ``https://<account>.<service>.core.windows.net``; tables skip the token check only for the table
access-policy operations, which OAuth cannot call. One token serves each whole run of operations.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import Any, Callable

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from msi_credential.emulator import Emulator, decode_jwt

from .conftest import Azurite, async_credential, container_name, sync_credential

pytestmark = pytest.mark.e2e

STORAGE_RESOURCE = "https://storage.azure.com"
CLIENT_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 30}
BLOBS = {
    "hello.txt": b"hello, managed identity\n",
    "nested/data.bin": bytes(range(256)) * 64,
}
MESSAGES = [f"message {number}" for number in range(5)]
ENTITIES = [{"PartitionKey": "p", "RowKey": str(number), "value": number * 10} for number in range(5)]


def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:16]}"


def table_name() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


# Each run creates a fresh container, queue or table (Azurite's data lives for the whole session), works in it,
# sees it listed, deletes it and sees it gone: the part in between is the service's own.

# ------------------------------------------------------------------------------------------------------ blobs


def exercise_blobs_sync(container: Any) -> None:
    """Upload, list, download and delete blobs."""
    for blob, data in BLOBS.items():
        container.upload_blob(blob, data)
    assert sorted(item.name for item in container.list_blobs()) == sorted(BLOBS)
    for blob, data in BLOBS.items():
        assert container.download_blob(blob).readall() == data
    for blob in BLOBS:
        container.delete_blob(blob)
    assert list(container.list_blobs()) == []


async def exercise_blobs_async(container: Any) -> None:
    """The same operations with the async client."""
    for blob, data in BLOBS.items():
        await container.upload_blob(blob, data)
    assert sorted([item.name async for item in container.list_blobs()]) == sorted(BLOBS)
    for blob, data in BLOBS.items():
        downloader = await container.download_blob(blob)
        assert await downloader.readall() == data
    for blob in BLOBS:
        await container.delete_blob(blob)
    assert [item async for item in container.list_blobs()] == []


# ----------------------------------------------------------------------------------------------------- queues


def exercise_queue_sync(queue: Any) -> None:
    for text in MESSAGES:
        queue.send_message(text)
    assert queue.get_queue_properties().approximate_message_count == len(MESSAGES)
    received = list(queue.receive_messages(messages_per_page=32))
    assert sorted(message.content for message in received) == MESSAGES
    for message in received:
        queue.delete_message(message)
    assert list(queue.peek_messages(max_messages=32)) == []


async def exercise_queue_async(queue: Any) -> None:
    for text in MESSAGES:
        await queue.send_message(text)
    assert (await queue.get_queue_properties()).approximate_message_count == len(MESSAGES)
    received = [message async for message in queue.receive_messages(messages_per_page=32)]
    assert sorted(message.content for message in received) == MESSAGES
    for message in received:
        await queue.delete_message(message)
    assert await queue.peek_messages(max_messages=32) == []


# ----------------------------------------------------------------------------------------------------- tables


def exercise_table_sync(table: Any) -> None:
    for entity in ENTITIES:
        table.create_entity(entity)
    assert table.get_entity("p", "3")["value"] == 30
    found = list(table.query_entities("value ge @low", parameters={"low": 20}))
    assert sorted(entity["RowKey"] for entity in found) == ["2", "3", "4"]
    table.upsert_entity({"PartitionKey": "p", "RowKey": "0", "value": -1})
    assert table.get_entity("p", "0")["value"] == -1
    table.delete_entity("p", "1")
    assert len(list(table.list_entities())) == len(ENTITIES) - 1


async def exercise_table_async(table: Any) -> None:
    for entity in ENTITIES:
        await table.create_entity(entity)
    assert (await table.get_entity("p", "3"))["value"] == 30
    found = [entity async for entity in table.query_entities("value ge @low", parameters={"low": 20})]
    assert sorted(entity["RowKey"] for entity in found) == ["2", "3", "4"]
    await table.upsert_entity({"PartitionKey": "p", "RowKey": "0", "value": -1})
    assert (await table.get_entity("p", "0"))["value"] == -1
    await table.delete_entity("p", "1")
    assert len([entity async for entity in table.list_entities()]) == len(ENTITIES) - 1


# ---------------------------------------------------------------------------------------- the three services


@dataclass(frozen=True)
class Service:
    """One storage service: its Azurite fixture, its SDK's service clients, and what a run does in it."""

    name: str  # blob, queue, table: as in the account's host name
    kind: str  # what the service client creates, lists and deletes: container, queue, table
    new_name: Callable[[], str]
    azurite_fixture: str
    client: str  # "module:Class" of the sync client; the async one is in the module's ``aio``
    exercise_sync: Callable[[Any], None]  # given the created container, queue or table
    exercise_async: Callable[[Any], Awaitable[None]]
    sources: tuple[str, ...]  # the emulator sources each round trip runs against

    @property
    def account_audience(self) -> str:
        return f"https://devstoreaccount1.{self.name}.core.windows.net"

    def client_class(self, asynchronous: bool) -> Any:
        module, _, name = self.client.partition(":")
        return getattr(importlib.import_module(module + ".aio" if asynchronous else module), name)

    def sync_client(self, azurite: Azurite, credential: Any, **kwargs: Any) -> Any:
        return self.client_class(False)(
            azurite.account_url,
            credential=credential,
            connection_verify=azurite.ca_path,
            **CLIENT_TIMEOUTS,
            **kwargs,
        )

    def async_client(self, azurite: Azurite, credential: Any) -> Any:
        return self.client_class(True)(
            azurite.account_url, credential=credential, connection_verify=azurite.ca_path, **CLIENT_TIMEOUTS
        )

    def create(self, client: Any, name: str) -> Any:
        return getattr(client, f"create_{self.kind}")(name)

    def run_sync(self, client: Any) -> None:
        """Create a fresh container, queue or table, exercise it, see it listed, delete it and see it gone."""
        name = self.new_name()
        self.exercise_sync(self.create(client, name))
        listed = getattr(client, f"list_{self.kind}s")
        assert name in [item.name for item in listed()]
        getattr(client, f"delete_{self.kind}")(name)
        assert name not in [item.name for item in listed()]

    async def run_async(self, client: Any) -> None:
        """The same with the async client."""
        name = self.new_name()
        await self.exercise_async(await self.create(client, name))
        listed = getattr(client, f"list_{self.kind}s")
        assert name in [item.name async for item in listed()]
        await getattr(client, f"delete_{self.kind}")(name)
        assert name not in [item.name async for item in listed()]


SERVICES = [
    Service(
        "blob",
        "container",
        container_name,
        "azurite",
        "azure.storage.blob:BlobServiceClient",
        exercise_blobs_sync,
        exercise_blobs_async,
        ("imds", "app_service", "azure_arc"),
    ),
    Service(
        "queue",
        "queue",
        queue_name,
        "azurite_queue",
        "azure.storage.queue:QueueServiceClient",
        exercise_queue_sync,
        exercise_queue_async,
        ("imds", "app_service"),
    ),
    Service(
        "table",
        "table",
        table_name,
        "azurite_table",
        "azure.data.tables:TableServiceClient",
        exercise_table_sync,
        exercise_table_async,
        ("imds", "app_service"),
    ),
]
# (service, source) for the round trips: a case per service and source, with ids such as "queue-imds"
ROUND_TRIPS = [
    pytest.param(service, source, id=f"{service.name}-{source}")
    for service in SERVICES
    for source in service.sources
]


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(request.param) as running:
        yield running


def azurite_of(service: Service, request: pytest.FixtureRequest) -> Azurite:
    """The session's Azurite for the service (started on first use)."""
    azurite: Azurite = request.getfixturevalue(service.azurite_fixture)
    return azurite


def assert_one_token_for(emulator: Emulator, audience: str) -> None:
    assert emulator.tokens_issued == 1
    claims = decode_jwt(emulator.issued_tokens()[0])
    assert claims["aud"] == audience
    assert claims["iss"] == f"https://sts.windows.net/{emulator.tenant_id}/"
    token_requests = [request for request in emulator.requests if "resource" in request.query]
    assert {request.query["resource"] for request in token_requests} == {audience}


@pytest.mark.parametrize(("service", "emulator"), ROUND_TRIPS, indirect=["emulator"])
def test_sync_client_round_trip(service: Service, emulator: Emulator, request: pytest.FixtureRequest) -> None:
    azurite = azurite_of(service, request)

    with sync_credential(emulator) as credential:
        assert credential.source.value == emulator.source.value
        with service.sync_client(azurite, credential) as client:
            service.run_sync(client)

    assert_one_token_for(emulator, STORAGE_RESOURCE)


@pytest.mark.parametrize(("service", "emulator"), ROUND_TRIPS, indirect=["emulator"])
async def test_async_client_round_trip(
    service: Service, emulator: Emulator, request: pytest.FixtureRequest
) -> None:
    azurite = azurite_of(service, request)

    async with async_credential(emulator) as credential:
        assert credential.source.value == emulator.source.value
        async with service.async_client(azurite, credential) as client:
            await service.run_async(client)

    assert_one_token_for(emulator, STORAGE_RESOURCE)


@pytest.mark.parametrize("service", SERVICES, ids=[service.name for service in SERVICES])
def test_account_audience_accepted_other_audience_refused(
    service: Service, request: pytest.FixtureRequest
) -> None:
    """``audience=`` makes the scope, hence the token's aud, the account's own: Azurite accepts it too; a token
    for another resource (Key Vault's) it refuses."""
    azurite = azurite_of(service, request)

    with Emulator("imds") as emulator, sync_credential(emulator) as credential:
        with service.sync_client(azurite, credential, audience=service.account_audience) as client:
            service.run_sync(client)
        assert_one_token_for(emulator, service.account_audience)

        with (
            service.sync_client(azurite, credential, audience="https://vault.azure.net") as client,
            pytest.raises((ClientAuthenticationError, HttpResponseError)) as caught,
        ):
            service.create(client, service.new_name())
        assert caught.value.status_code in (401, 403)
