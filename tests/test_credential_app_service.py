"""App Service / Functions / Container Apps through the public credential, both faces, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

VAULT = "https://vault.azure.net/.default"
IDENTITY = UserAssignedIdentity(
    client_id="aaaaaaaa-1111-1111-1111-111111111111",
    object_id="bbbbbbbb-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a",
)


def test_app_service_returns_a_token_and_sends_the_exact_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    credential = face.credential(emulator)
    assert credential.source is ManagedIdentitySource.APP_SERVICE

    token = credential.get_token(VAULT)

    assert decode_jwt(token.token)["aud"] == "https://vault.azure.net"
    [request] = emulator.requests
    assert request.method == "GET"
    assert request.path == "/msi/token"
    assert request.query == {"api-version": "2019-08-01", "resource": "https://vault.azure.net"}
    assert request.headers["x-identity-header"] == emulator.environ["IDENTITY_HEADER"]
    assert "metadata" not in request.headers


@pytest.mark.parametrize(
    ("keyword", "wire_name", "value"),
    [
        ("client_id", "client_id", IDENTITY.client_id),
        ("object_id", "object_id", IDENTITY.object_id),
        ("resource_id", "mi_res_id", IDENTITY.resource_id),
    ],
)
def test_app_service_sends_user_assigned_selector_under_its_wire_name(
    face: Any, emulator_factory: Any, keyword: str, wire_name: str, value: str
) -> None:
    emulator = emulator_factory("app_service", identities=[IDENTITY])
    credential = face.credential(emulator, **{keyword: value})

    token = credential.get_token(VAULT)

    assert decode_jwt(token.token)["appid"] == IDENTITY.client_id
    query = emulator.requests[0].query
    assert query[wire_name] == value
    assert "msi_res_id" not in query and "resource_id" not in query


def test_app_service_unknown_identity_is_unavailable(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    credential = face.credential(emulator, client_id="cccccccc-3333-3333-3333-333333333333")

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "identity_not_found"
    assert caught.value.correlation_id


def test_app_service_wrong_secret_fails_without_echoing_it(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    environ = dict(emulator.environ, IDENTITY_HEADER="not-the-right-secret-value")
    credential = face.credential(emulator, _environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.status_code in (401, 403)
    assert "not-the-right-secret-value" not in str(caught.value)
    assert "not-the-right-secret-value" not in repr(caught.value)


def test_app_service_retries_server_errors_but_not_404(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(500), Fault(404))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.status_code == 404
    assert len(emulator.requests) == 2
    assert face.sleeps == [1.0]


def test_app_service_honours_retry_after(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "7"}))
    credential = face.credential(emulator)

    credential.get_token(VAULT)

    assert face.sleeps == [7.0]


def test_app_service_redirect_is_refused_and_not_followed(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(302, b"", {"Location": "http://127.0.0.1:9/steal"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "unexpected_redirect"
    assert len(emulator.requests) == 1


def test_app_service_endpoint_off_this_machine_is_refused_before_any_socket(face: Any) -> None:
    credential = face.credential(
        _environ={"IDENTITY_ENDPOINT": "http://10.0.0.1:8081/msi/token", "IDENTITY_HEADER": "secret-value"}
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "invalid_endpoint"
    assert "IDENTITY_ENDPOINT" in str(caught.value)
    assert "secret-value" not in str(caught.value)
