"""The x-ms-client-request-id, which msi_credential/_engine/flow.py decides per attempt and names in its
errors (from the former test_diagnostics.py). Both faces against the emulator."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Emulator, Fault

from ..faces.support import STORAGE, failure


def entra_error(correlation_id: str) -> dict[str, Any]:
    return {
        "error": "invalid_client",
        "error_description": f"AADSTS700016: Application not found. Correlation ID: {correlation_id}",
        "error_codes": [700016],
        "correlation_id": correlation_id,
    }


def test_a_refusal_names_the_request_id_it_was_sent_with_next_to_the_correlation_id(
    face: Any, emulator_factory: Any
) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    emulator.script(Fault(400, body=entra_error("corr-77aa")))

    error = failure(face, emulator)

    [request] = emulator.requests
    sent = request.headers["x-ms-client-request-id"]
    assert error.client_request_id == sent
    assert error.correlation_id == "corr-77aa"
    assert "correlation id corr-77aa" in error.message
    assert f"x-ms-client-request-id {sent}" in error.message
    assert sent in str(error)


def test_the_id_is_the_last_attempts_and_each_attempt_has_its_own(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    emulator.script(Fault(500), Fault(500), Fault(500))

    error = failure(face, emulator, retry_total=2)

    ids = [request.headers["x-ms-client-request-id"] for request in emulator.requests]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert error.client_request_id == ids[-1]


@pytest.mark.parametrize("source", ["imds", "app_service", "azure_arc", "machine_learning", "cloud_shell"])
def test_every_source_carries_it(face: Any, emulator_factory: Any, source: str) -> None:
    kwargs: dict[str, Any] = {}
    emulator: Emulator = emulator_factory(source, **kwargs)
    emulator.script(Fault(403, body={"error": "forbidden", "error_description": "no"}))

    error = failure(face, emulator, retry_total=0)

    assert error.client_request_id == emulator.requests[-1].headers["x-ms-client-request-id"]


def test_an_unreachable_endpoint_names_the_request_id_too(face: Any) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    environ = {"IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/token", "IDENTITY_HEADER": "h" * 8}

    with pytest.raises(ManagedIdentityError) as caught:
        face.credential(_environ=environ, retry_total=0).get_token(STORAGE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert caught.value.client_request_id
    assert caught.value.client_request_id in caught.value.message


def test_an_error_before_any_request_has_no_request_id(face: Any) -> None:
    environ = {"IDENTITY_ENDPOINT": "http://10.0.0.1/token", "IDENTITY_HEADER": "h" * 8}
    with pytest.raises(ManagedIdentityError) as caught:
        face.credential(_environ=environ).get_token(STORAGE)
    assert caught.value.error_code == "invalid_endpoint"
    assert caught.value.client_request_id is None
    assert "x-ms-client-request-id" not in caught.value.message


def test_request_id_keyword_is_sent_and_named(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    emulator.script(Fault(500))

    error = failure(face, emulator, retry_total=0, request_id="support-case-42")

    assert emulator.requests[0].headers["x-ms-client-request-id"] == "support-case-42"
    assert error.client_request_id == "support-case-42"


def test_auto_request_id_false_sends_none_and_names_none(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    emulator.script(Fault(500))

    error = failure(face, emulator, retry_total=0, auto_request_id=False)

    assert "x-ms-client-request-id" not in emulator.requests[0].headers
    assert error.client_request_id is None


def test_a_successful_request_carries_an_id(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    face.credential(emulator).get_token(STORAGE)
    assert emulator.requests[0].headers["x-ms-client-request-id"]
