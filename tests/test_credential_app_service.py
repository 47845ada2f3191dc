"""App Service / Functions / Container Apps through the public credential, both faces, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential.emulator import Fault

VAULT = "https://vault.azure.net/.default"


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


def test_app_service_redirect_is_refused_and_not_followed(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(302, b"", {"Location": "http://127.0.0.1:9/steal"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "unexpected_redirect"
    assert len(emulator.requests) == 1
