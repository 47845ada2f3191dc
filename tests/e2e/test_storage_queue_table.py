"""azure-storage-queue and azure-data-tables, sync and async, on our credential, against Azurite with OAuth.

Azurite 3.37.0 (``--oauth basic``, HTTPS) checks every bearer token's issuer, lifetime and audience for queues and
for tables alike, in its queue and table token authenticators (installed by ``npm ci``): tables accept the audiences
``https://storage.azure.com`` and ``https://<account>.table.core.windows.net`` (queues the same with ``.queue.``),
and skip the token check only for the table access-policy operations, which OAuth cannot call. One token serves
each whole run of operations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from msi_credential.emulator import Emulator, decode_jwt

from .conftest import Azurite, async_credential, sync_credential

pytestmark = pytest.mark.e2e

STORAGE_RESOURCE = "https://storage.azure.com"
CLIENT_TIMEOUTS: dict[str, Any] = {"connection_timeout": 5, "read_timeout": 30}
MESSAGES = [f"message {number}" for number in range(5)]
ENTITIES = [{"PartitionKey": "p", "RowKey": str(number), "value": number * 10} for number in range(5)]


@pytest.fixture(params=["imds", "app_service"])
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(request.param) as running:
        yield running


def assert_one_token_for(emulator: Emulator, audience: str) -> None:
    assert emulator.tokens_issued == 1
    claims = decode_jwt(emulator.issued_tokens()[0])
    assert claims["aud"] == audience
    token_requests = [request for request in emulator.requests if "resource" in request.query]
    assert {request.query["resource"] for request in token_requests} == {audience}


def queue_name() -> str:
    return f"q-{uuid.uuid4().hex[:16]}"


def table_name() -> str:
    return f"t{uuid.uuid4().hex[:16]}"


# ----------------------------------------------------------------------------------------------------- queues


def exercise_queue_sync(service: Any) -> None:
    name = queue_name()
    queue = service.create_queue(name)
    for text in MESSAGES:
        queue.send_message(text)
    assert queue.get_queue_properties().approximate_message_count == len(MESSAGES)
    received = list(queue.receive_messages(messages_per_page=32))
    assert sorted(message.content for message in received) == MESSAGES
    for message in received:
        queue.delete_message(message)
    assert list(queue.peek_messages(max_messages=32)) == []
    assert name in [item.name for item in service.list_queues()]
    service.delete_queue(name)


async def exercise_queue_async(service: Any) -> None:
    name = queue_name()
    queue = await service.create_queue(name)
    for text in MESSAGES:
        await queue.send_message(text)
    assert (await queue.get_queue_properties()).approximate_message_count == len(MESSAGES)
    received = [message async for message in queue.receive_messages(messages_per_page=32)]
    assert sorted(message.content for message in received) == MESSAGES
    for message in received:
        await queue.delete_message(message)
    assert await queue.peek_messages(max_messages=32) == []
    assert name in [item.name async for item in service.list_queues()]
    await service.delete_queue(name)


def test_sync_queue_client_round_trip(azurite_queue: Azurite, emulator: Emulator) -> None:
    from azure.storage.queue import QueueServiceClient

    with (
        sync_credential(emulator) as credential,
        QueueServiceClient(
            azurite_queue.account_url,
            credential=credential,
            connection_verify=azurite_queue.ca_path,
            **CLIENT_TIMEOUTS,
        ) as service,
    ):
        exercise_queue_sync(service)
    assert_one_token_for(emulator, STORAGE_RESOURCE)


async def test_async_queue_client_round_trip(azurite_queue: Azurite, emulator: Emulator) -> None:
    from azure.storage.queue.aio import QueueServiceClient

    async with (
        async_credential(emulator) as credential,
        QueueServiceClient(
            azurite_queue.account_url,
            credential=credential,
            connection_verify=azurite_queue.ca_path,
            **CLIENT_TIMEOUTS,
        ) as service,
    ):
        await exercise_queue_async(service)
    assert_one_token_for(emulator, STORAGE_RESOURCE)


def test_queue_token_for_another_audience_is_refused(azurite_queue: Azurite) -> None:
    from azure.storage.queue import QueueServiceClient

    with (
        Emulator("imds") as emulator,
        sync_credential(emulator) as credential,
        QueueServiceClient(
            azurite_queue.account_url,
            credential=credential,
            connection_verify=azurite_queue.ca_path,
            audience="https://vault.azure.net",
            **CLIENT_TIMEOUTS,
        ) as service,
        pytest.raises((ClientAuthenticationError, HttpResponseError)) as caught,
    ):
        service.create_queue(queue_name())
    assert caught.value.status_code in (401, 403)


# ----------------------------------------------------------------------------------------------------- tables


def exercise_table_sync(service: Any) -> None:
    name = table_name()
    table = service.create_table(name)
    for entity in ENTITIES:
        table.create_entity(entity)
    assert table.get_entity("p", "3")["value"] == 30
    found = list(table.query_entities("value ge @low", parameters={"low": 20}))
    assert sorted(entity["RowKey"] for entity in found) == ["2", "3", "4"]
    table.upsert_entity({"PartitionKey": "p", "RowKey": "0", "value": -1})
    assert table.get_entity("p", "0")["value"] == -1
    table.delete_entity("p", "1")
    assert len(list(table.list_entities())) == len(ENTITIES) - 1
    assert name in [item.name for item in service.list_tables()]
    service.delete_table(name)


async def exercise_table_async(service: Any) -> None:
    name = table_name()
    table = await service.create_table(name)
    for entity in ENTITIES:
        await table.create_entity(entity)
    assert (await table.get_entity("p", "3"))["value"] == 30
    found = [entity async for entity in table.query_entities("value ge @low", parameters={"low": 20})]
    assert sorted(entity["RowKey"] for entity in found) == ["2", "3", "4"]
    await table.upsert_entity({"PartitionKey": "p", "RowKey": "0", "value": -1})
    assert (await table.get_entity("p", "0"))["value"] == -1
    await table.delete_entity("p", "1")
    assert len([entity async for entity in table.list_entities()]) == len(ENTITIES) - 1
    assert name in [item.name async for item in service.list_tables()]
    await service.delete_table(name)


def test_sync_table_client_round_trip(azurite_table: Azurite, emulator: Emulator) -> None:
    from azure.data.tables import TableServiceClient

    with (
        sync_credential(emulator) as credential,
        TableServiceClient(
            azurite_table.account_url,
            credential=credential,
            connection_verify=azurite_table.ca_path,
            **CLIENT_TIMEOUTS,
        ) as service,
    ):
        exercise_table_sync(service)
    assert_one_token_for(emulator, STORAGE_RESOURCE)


async def test_async_table_client_round_trip(azurite_table: Azurite, emulator: Emulator) -> None:
    from azure.data.tables.aio import TableServiceClient

    async with (
        async_credential(emulator) as credential,
        TableServiceClient(
            azurite_table.account_url,
            credential=credential,
            connection_verify=azurite_table.ca_path,
            **CLIENT_TIMEOUTS,
        ) as service,
    ):
        await exercise_table_async(service)
    assert_one_token_for(emulator, STORAGE_RESOURCE)


def test_table_account_audience_accepted_other_audience_refused(azurite_table: Azurite) -> None:
    from azure.data.tables import TableServiceClient

    account_audience = "https://devstoreaccount1.table.core.windows.net"
    with Emulator("imds") as emulator, sync_credential(emulator) as credential:
        with TableServiceClient(
            azurite_table.account_url,
            credential=credential,
            connection_verify=azurite_table.ca_path,
            audience=account_audience,
            **CLIENT_TIMEOUTS,
        ) as service:
            exercise_table_sync(service)
        assert_one_token_for(emulator, account_audience)

        with (
            TableServiceClient(
                azurite_table.account_url,
                credential=credential,
                connection_verify=azurite_table.ca_path,
                audience="https://vault.azure.net",
                **CLIENT_TIMEOUTS,
            ) as service,
            pytest.raises((ClientAuthenticationError, HttpResponseError)) as caught,
        ):
            service.create_table(table_name())
        assert caught.value.status_code in (401, 403)
