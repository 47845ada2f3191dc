"""Azure Machine Learning through the public credential, both faces, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

IDENTITY = UserAssignedIdentity(
    client_id="dddddddd-1111-1111-1111-111111111111",
    object_id="eeeeeeee-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/m",
)


def test_machine_learning_returns_a_token_and_sends_the_exact_request(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("machine_learning")
    credential = face.credential(emulator)
    assert credential.source is ManagedIdentitySource.MACHINE_LEARNING

    token = credential.get_token("https://storage.azure.com/.default")

    assert decode_jwt(token.token)["aud"] == "https://storage.azure.com"
    [request] = emulator.requests
    assert request.method == "GET"
    assert request.query == {"api-version": "2017-09-01", "resource": "https://storage.azure.com"}
    assert request.headers["secret"] == emulator.environ["MSI_SECRET"]
    assert request.headers["metadata"] == "true"


def test_machine_learning_sends_client_id_as_clientid(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("machine_learning", identities=[IDENTITY])
    credential = face.credential(emulator, client_id=IDENTITY.client_id)

    token = credential.get_token("https://storage.azure.com/.default")

    assert decode_jwt(token.token)["appid"] == IDENTITY.client_id
    assert emulator.requests[0].query["clientid"] == IDENTITY.client_id
    assert "client_id" not in emulator.requests[0].query


def test_machine_learning_system_assigned_sends_default_client_id(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("machine_learning", default_client_id="ffffffff-0000-0000-0000-000000000000")
    credential = face.credential(emulator)

    credential.get_token("https://storage.azure.com/.default")

    assert emulator.requests[0].query["clientid"] == "ffffffff-0000-0000-0000-000000000000"


@pytest.mark.parametrize("keyword", ["object_id", "resource_id"])
def test_machine_learning_refuses_object_and_resource_ids(
    face: Any, emulator_factory: Any, keyword: str
) -> None:
    emulator = emulator_factory("machine_learning")
    credential = face.credential(emulator, **{keyword: getattr(IDENTITY, keyword)})

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token("https://storage.azure.com/.default")

    assert caught.value.error_code == "user_assigned_not_supported"
    assert emulator.requests == []


@pytest.mark.parametrize(
    "expires_on",
    [
        "06/20/2049 02:57:58 +00:00",
        "1/16/2049 5:24:12 AM +00:00",
        "2049-10-18T19:51:37.0000000+00:00",
    ],
)
def test_machine_learning_reads_date_expiry_forms(face: Any, emulator_factory: Any, expires_on: str) -> None:
    # Far-future dates fail the 7-day lifetime rule, so use a fixed clock just before them.
    emulator = emulator_factory("machine_learning")
    from msi_credential._engine.expiry import parse_expires_on

    expiry = parse_expires_on(expires_on)
    assert expiry is not None
    emulator.script(Fault(200, {"access_token": "opaque-token-value", "expires_on": expires_on}))
    credential = face.credential(emulator, _clock=lambda: float(expiry - 3600))

    token = credential.get_token("https://storage.azure.com/.default")

    assert token.expires_on == expiry
