"""Hand-off from the engine helper (issue 27), to fold into test_imds.py of this folder: IMDS's own reading of error
answers (``sources/imds.py`` ``read_error``: 403 "unreachable", 400 invalid resource or no such identity).

Moved from test_response.py, test_engine_parsing_rules.py and test_engine_messages_and_edges.py (the tests folder's
root, before issue 27).
"""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential._engine.effects import Response
from msi_credential._engine.response import error_from_response
from msi_credential._errors import CredentialUnavailableError
from msi_credential._source import ManagedIdentitySource as S

from ..scripted import answer, error_fields, error_for, is_failed
from ..test_response import IMDS_BODY


@pytest.mark.parametrize(
    "body",
    [
        {
            "error": "forbidden",
            "error_description": "A socket operation was attempted to an unreachable network",
        },
        {"message": "Network UNREACHABLE"},
    ],
)
def test_imds_403_containing_unreachable_is_unavailable(body: dict[str, Any]) -> None:
    error = error_from_response(answer(403, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "imds_unreachable"


def test_imds_403_plain_text_unreachable_docker_desktop_is_unavailable() -> None:
    body = b"connecting to 169.254.169.254:80: dial tcp: A socket operation was attempted to an unreachable network."
    error = error_from_response(answer(403, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "imds_unreachable"


def test_imds_other_403_is_failed() -> None:
    error = error_from_response(
        answer(403, {"error": "forbidden", "error_description": "nope"}), source=S.IMDS
    )
    assert is_failed(error)
    assert error.error_code == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_resource", "error_description": "bad resource"},
        {
            "error": "invalid_request",
            "error_description": "AADSTS500011: The resource principal was not found",
        },
        {"error": "invalid_request", "error_description": "AADSTS50001: The application was not found"},
    ],
)
def test_imds_400_invalid_resource_is_failed_invalid_resource(body: dict[str, Any]) -> None:
    error = error_from_response(answer(400, body), source=S.IMDS)
    assert is_failed(error)
    assert error.error_code == "invalid_resource"
    assert error.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        IMDS_BODY,
        {"error": "invalid_request", "error_description": "Multiple user assigned identities exist"},
        {},
    ],
)
def test_imds_other_400_is_unavailable_identity_not_found(body: dict[str, Any]) -> None:
    error = error_from_response(answer(400, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "identity_not_found"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (404, {"error": "not_found"}, "not_found"),
        (500, {"error": "internal_error", "error_description": "boom"}, "internal_error"),
        (429, {}, "http_429"),
        (401, {"error": "unauthorized"}, "unauthorized"),
    ],
)
def test_imds_other_json_errors_are_failed(status: int, body: dict[str, Any], code: str) -> None:
    error = error_from_response(answer(status, body), source=S.IMDS)
    assert is_failed(error)
    assert error.error_code == code


def test_imds_unreachable_403_says_imds_is_unreachable_from_this_host() -> None:
    error = error_for(403, b'{"error_description": "Destination unreachable"}', S.IMDS)
    assert error.error_code == "imds_unreachable"
    assert error.message == "IMDS is unreachable from this host (HTTP 403): Destination unreachable"


def test_imds_400_whose_server_code_is_an_unknown_resource_is_invalid_resource() -> None:
    # the AADSTS code may come as the error code alone, with a description that does not repeat it
    error = error_for(400, b'{"error": "AADSTS500011", "error_description": "no such app"}', S.IMDS)
    assert error.error_code == "invalid_resource"
    assert error.message == "IMDS refused the resource (HTTP 400, AADSTS500011): no such app"


def test_imds_400_without_a_server_code_is_identity_not_found_not_a_resource_problem() -> None:
    error = error_for(400, b'{"error_description": "None of the identities match"}', S.IMDS)
    assert error.error_code == "identity_not_found"


def test_imds_400_for_an_unknown_identity_says_so() -> None:
    body = b'{"error": "invalid_request", "error_description": "Identity not found"}'
    error = error_from_response(Response(400, {}, body), source=S.IMDS)

    assert error_fields(error) == (
        True,
        "identity_not_found",
        400,
        S.IMDS,
        "IMDS has no such identity assigned (identity not found) (HTTP 400, invalid_request): Identity not found",
    )
