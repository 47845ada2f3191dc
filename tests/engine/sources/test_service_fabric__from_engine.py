"""Hand-off from the engine helper (issue 27), to fold into test_service_fabric.py of this folder: Service Fabric's
own reading of error answers (``sources/service_fabric.py`` ``read_error``: 404 or ManagedIdentityNotFound, its own
codes).

Moved from test_response.py and test_engine_parsing_rules.py (the tests folder's root, before issue 27).
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


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            404,
            b"{}",
            "identity_not_found",
            "Service Fabric managed identity endpoint has no managed identity for this application (HTTP 404)",
        ),
        (
            401,
            b'{"error": {"code": "SecretHeaderNotFound"}}',
            "secret_header_not_found",
            "Service Fabric managed identity endpoint refused the token request (HTTP 401, SecretHeaderNotFound)",
        ),
    ],
    ids=["404-has-no-managed-identity", "known-code-keeps-the-refusal-summary"],
)
def test_service_fabric_error_answers_say_what_went_wrong_in_these_words(
    status: int, body: bytes, code: str, message: str
) -> None:
    """A 404 says the application has no managed identity; a known code of its own keeps the refusal summary."""
    error = error_for(status, body, S.SERVICE_FABRIC)
    assert (error.error_code, error.message) == (code, message)
