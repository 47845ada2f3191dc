"""msi_credential/_engine/response.py through both faces (from the former test_credential_common.py): a 2xx
answer that is not a usable token is a typed error, a body over one mebibyte is refused, JSON served as
text/plain is read."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentitySource
from msi_credential.emulator import Fault

from ..faces.support import STORAGE, failure


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service Unavailable</body></html>",
        b"not json at all",
        b"[1, 2, 3]",
        b'{"token_type": "Bearer"}',
        b'{"access_token": "", "expires_in": 3600}',
        b'{"access_token": 42, "expires_in": 3600}',
        b'{"access_token": "t", "expires_in": -5}',
        b'{"access_token": "t", "expires_in": 99999999}',
        b'{"access_token": "t"}',
        b'{"access_token": "t", "expires_on": "next tuesday"}',
    ],
)
def test_unusable_success_bodies_are_typed_errors(face: Any, emulator_factory: Any, body: bytes) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, body, {"Content-Type": "text/html"}))

    error = failure(face, emulator)

    assert error.error_code == "invalid_response"
    assert error.source is ManagedIdentitySource.APP_SERVICE


def test_body_over_one_mebibyte_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, b"x" * (1024 * 1024 + 10)))

    assert failure(face, emulator).error_code == "response_too_large"


def test_text_plain_json_is_accepted(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(200, b'{"access_token": "aci-token", "expires_in": "3600"}', {"Content-Type": "text/plain"})
    )
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token == "aci-token"
