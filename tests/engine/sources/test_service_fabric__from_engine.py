"""Hand-off from the engine helper (issue 27): Service Fabric's own reading of error answers
(``sources/service_fabric.py`` ``read_error``: 404 or ManagedIdentityNotFound, its own codes), from
tests/engine/test_response.py and tests/test_engine_parsing_rules.py, to fold into
tests/engine/sources/test_service_fabric.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential._engine.response import error_from_response
from msi_credential._errors import CredentialUnavailableError
from msi_credential._source import ManagedIdentitySource as S

from ..scripted import answer, error_for, is_failed


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (404, {}),
        (404, b"not found"),
        (400, {"error": {"code": "ManagedIdentityNotFound", "message": "none", "correlationId": "sf"}}),
    ],
)
def test_service_fabric_404_or_not_found_is_unavailable_identity_not_found(status: int, body: Any) -> None:
    error = error_from_response(answer(status, body), source=S.SERVICE_FABRIC)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "identity_not_found"


@pytest.mark.parametrize(
    ("server_code", "status", "code"),
    [
        ("SecretHeaderNotFound", 401, "secret_header_not_found"),
        ("ArgumentNullOrEmpty", 400, "invalid_resource"),
        ("InvalidApiVersion", 400, "invalid_api_version"),
        ("InternalServerError", 500, "internal_server_error"),
    ],
)
def test_service_fabric_mapped_codes_are_failed(server_code: str, status: int, code: str) -> None:
    body = {"error": {"correlationId": "sf-corr", "code": server_code, "message": "m"}}
    error = error_from_response(answer(status, body), source=S.SERVICE_FABRIC)
    assert is_failed(error)
    assert error.error_code == code
    assert error.status_code == status
    assert error.correlation_id == "sf-corr"
    assert error.source is S.SERVICE_FABRIC


def test_service_fabric_404_says_the_application_has_no_managed_identity() -> None:
    error = error_for(404, b"{}", S.SERVICE_FABRIC)
    assert error.error_code == "identity_not_found"
    assert error.message == (
        "Service Fabric managed identity endpoint has no managed identity for this application (HTTP 404)"
    )


def test_a_service_fabric_known_code_keeps_the_refusal_summary() -> None:
    error = error_for(401, b'{"error": {"code": "SecretHeaderNotFound"}}', S.SERVICE_FABRIC)
    assert error.error_code == "secret_header_not_found"
    assert error.message == (
        "Service Fabric managed identity endpoint refused the token request (HTTP 401, SecretHeaderNotFound)"
    )
