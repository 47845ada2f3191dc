"""Secrets stay secret: no token, identity header, MSI_SECRET or Arc key in logs, errors or reprs, for any source."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Fault

SCOPE = "https://storage.azure.com/.default"
SOURCES = ["imds", "app_service", "azure_arc", "cloud_shell", "service_fabric", "machine_learning"]


def _secrets_of(emulator: Any) -> list[str]:
    values = [emulator.environ.get(name, "") for name in ("IDENTITY_HEADER", "MSI_SECRET")]
    for request in emulator.requests:  # the Arc keys the credential sent
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Basic "):
            values.append(authorization[len("Basic ") :])
    values.extend(emulator.issued_tokens())
    return [value for value in values if value]


@pytest.mark.parametrize("source", SOURCES)
def test_no_secret_reaches_logs_errors_or_reprs(
    face: Any, emulator_factory: Any, caplog: pytest.LogCaptureFixture, source: str
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = emulator_factory(source)
    credential = face.credential(emulator, logging_enable=True, retry_total=1)

    token = credential.get_token(SCOPE)
    credential.get_token(SCOPE, claims='{"access_token":{"nbf":{"essential":true}}}')
    # Failing answers that echo the secrets the endpoint was given, as a careless server might.
    echo = " ".join(
        value for name, value in emulator.environ.items() if name in ("IDENTITY_HEADER", "MSI_SECRET")
    )
    errors: list[ManagedIdentityError] = []
    for fault in (
        Fault(
            500, {"error": "server_error", "error_description": f"echo {echo}", "correlation_id": echo[:60]}
        ),
        Fault(400, {"statusCode": 400, "message": f"bad {echo}", "correlationId": "c"}),
        Fault(200, {"access_token": token.token, "expires_in": "soon"}),
        Fault(403, {"error": {"code": "Forbidden", "message": echo, "correlationId": "c"}}),
    ):
        emulator.script(fault, fault, fault, fault, fault)
        with pytest.raises(ManagedIdentityError) as caught:
            credential.get_token("https://vault.azure.net/.default", claims="{}")
        errors.append(caught.value)

    secrets = _secrets_of(emulator)
    assert len(secrets) >= 2
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [repr(credential.inner), str(credential.inner), repr(emulator.requests)]
    leaks = [(secret[:6] + "...", text[:80]) for text in texts for secret in secrets if secret in text]
    assert not leaks, f"{len(leaks)} secret(s) leaked"  # the message itself names no secret


def test_arc_key_echoed_by_the_agent_is_scrubbed(
    face: Any, emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = emulator_factory("azure_arc")
    key = "arc-key-content-that-must-not-leak"
    path = os.path.join(emulator.credential_kwargs["_arc_key_directory"], "echo.key")
    with open(path, "w") as handle:
        handle.write(key)
    emulator.script(
        Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"}),
        Fault(500, {"error": "server_error", "error_description": f"bad key {key}", "correlation_id": key}),
    )
    credential = face.credential(emulator, logging_enable=True, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert emulator.requests[1].headers["authorization"] == f"Basic {key}"
    texts = [record.getMessage() for record in caplog.records] + [str(caught.value), repr(caught.value)]
    assert not [text for text in texts if key in text]
