"""msi_credential/emulator/sources/app_service.py: App Service's side of the wire (its selector names and its
secret header)."""

from __future__ import annotations

from typing import Any

from msi_credential.emulator import decode_jwt

from ..http_calls import IDENTITY, RESOURCE, call, token_request


def test_app_service_ignores_msi_res_id(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service", identities=[IDENTITY])

    answer = token_request(emulator, msi_res_id=IDENTITY.resource_id)

    assert answer.status == 200
    assert decode_jwt(answer.json()["access_token"])["oid"] == emulator.system_identity.object_id


def test_app_service_secret_is_checked_without_being_echoed(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    query = {"api-version": "2019-08-01", "resource": RESOURCE}

    missing = call(emulator, query=query)
    wrong = call(emulator, query=query, headers={"X-IDENTITY-HEADER": "wrong-secret-value"})

    assert missing.status == 401
    assert wrong.status == 403
    assert set(wrong.json()) == {"statusCode", "message", "correlationId"}
    assert b"wrong-secret-value" not in wrong.body
