"""Cloud Shell through the public credential, both faces, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential.emulator import decode_jwt


def test_cloud_shell_posts_a_form_and_returns_a_token(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("cloud_shell")
    credential = face.credential(emulator)
    assert credential.source is ManagedIdentitySource.CLOUD_SHELL

    token = credential.get_token("https://management.azure.com/.default")

    assert decode_jwt(token.token)["aud"] == "https://management.azure.com"
    [request] = emulator.requests
    assert request.method == "POST"
    assert request.path == "/oauth2/token"
    assert request.query == {}
    assert request.form == {"resource": "https://management.azure.com"}
    assert request.headers["metadata"] == "true"
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")


@pytest.mark.parametrize("keyword", ["client_id", "object_id", "resource_id"])
def test_cloud_shell_refuses_user_assigned_identity_before_any_request(
    face: Any, emulator_factory: Any, keyword: str
) -> None:
    emulator = emulator_factory("cloud_shell")
    credential = face.credential(emulator, **{keyword: "44444444-4444-4444-4444-444444444444"})

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token("https://management.azure.com/.default")

    assert caught.value.error_code == "user_assigned_not_supported"
    assert emulator.requests == []
