"""msi_credential/emulator/sources/machine_learning.py: Azure Machine Learning's side of the wire (the compute's
default identity and the ``secret`` header)."""

from __future__ import annotations

from typing import Any

from msi_credential.emulator import decode_jwt

from ..http_calls import IDENTITY, RESOURCE, call, token_request


def test_machine_learning_default_client_id_is_the_system_identity(emulator_factory: Any) -> None:
    default = "ffffffff-0000-0000-0000-000000000000"
    emulator = emulator_factory("machine_learning", identities=[IDENTITY], default_client_id=default)

    answer = token_request(emulator, clientid=default)

    assert answer.status == 200
    claims = decode_jwt(answer.json()["access_token"])
    assert claims["oid"] == emulator.system_identity.object_id
    assert claims["appid"] == default


def test_machine_learning_secret_is_checked(emulator_factory: Any) -> None:
    emulator = emulator_factory("machine_learning")

    answer = call(
        emulator, query={"api-version": "2017-09-01", "resource": RESOURCE}, headers={"secret": "x"}
    )

    assert answer.status in (401, 403)
    assert emulator.tokens_issued == 0
