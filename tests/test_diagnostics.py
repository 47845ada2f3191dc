"""Support diagnostics: the x-ms-client-request-id an error is about, and which source the environment selects."""

from __future__ import annotations

import io
import pickle
import socket
from typing import Any

import pytest

import msi_credential
from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential.cli import main
from msi_credential.emulator import Emulator, Fault

STORAGE = "https://storage.azure.com/.default"


def entra_error(correlation_id: str) -> dict[str, Any]:
    return {
        "error": "invalid_client",
        "error_description": f"AADSTS700016: Application not found. Correlation ID: {correlation_id}",
        "error_codes": [700016],
        "correlation_id": correlation_id,
    }


def failure(face: Any, emulator: Emulator, **kwargs: Any) -> ManagedIdentityError:
    with pytest.raises(ManagedIdentityError) as caught:
        face.credential(emulator, **kwargs).get_token(STORAGE)
    return caught.value


# ------------------------------------------------------------------------------------------------ client request id


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


def test_errors_pickle_with_their_request_id(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("imds")
    emulator.script(Fault(400, body={"error": "invalid_request", "error_description": "Identity not found"}))

    error = failure(face, emulator)
    assert isinstance(error, CredentialUnavailableError)
    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, CredentialUnavailableError)
    assert copy.client_request_id == error.client_request_id
    assert copy.message == error.message
    assert copy.error_code == error.error_code


def test_a_successful_request_carries_an_id(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    face.credential(emulator).get_token(STORAGE)
    assert emulator.requests[0].headers["x-ms-client-request-id"]


# ------------------------------------------------------------------------------------------------ get_managed_identity_source


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({}, ManagedIdentitySource.IMDS),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "h"},
            ManagedIdentitySource.APP_SERVICE,
        ),
        (
            {
                "IDENTITY_ENDPOINT": "https://127.0.0.1:1/t",
                "IDENTITY_HEADER": "h",
                "IDENTITY_SERVER_THUMBPRINT": "a",
            },
            ManagedIdentitySource.SERVICE_FABRIC,
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IMDS_ENDPOINT": "x"},
            ManagedIdentitySource.AZURE_ARC,
        ),
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t", "MSI_SECRET": "s"}, ManagedIdentitySource.MACHINE_LEARNING),
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t"}, ManagedIdentitySource.CLOUD_SHELL),
        (
            {"AZURE_FEDERATED_TOKEN_FILE": "/f", "AZURE_TENANT_ID": "t"},
            ManagedIdentitySource.WORKLOAD_IDENTITY,
        ),
        # a configuration a credential would refuse still names its source
        (
            {"IDENTITY_ENDPOINT": "http://10.1.1.1/t", "IDENTITY_HEADER": "h"},
            ManagedIdentitySource.APP_SERVICE,
        ),
    ],
)
def test_get_managed_identity_source_says_what_the_environment_selects_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], source: ManagedIdentitySource
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        socket.socket, "connect", lambda *a: pytest.fail("get_managed_identity_source connected")
    )

    assert msi_credential.get_managed_identity_source() is source


def test_get_managed_identity_source_is_a_public_lazy_name() -> None:
    assert "get_managed_identity_source" in msi_credential.__all__
    assert "get_managed_identity_source" in dir(msi_credential)
    from msi_credential import get_managed_identity_source

    assert get_managed_identity_source() is ManagedIdentitySource.IMDS


def test_detect_uses_it_and_shows_the_token_proxy(
    monkeypatch: pytest.MonkeyPatch, emulator_factory: Any
) -> None:
    emulator: Emulator = emulator_factory("workload_identity", token_proxy=True)
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    asked: list[bool] = []
    real = msi_credential.get_managed_identity_source

    def spy() -> ManagedIdentitySource:
        asked.append(True)
        return real()

    import msi_credential._environment as environment

    monkeypatch.setattr(environment, "get_managed_identity_source", spy)
    out = io.StringIO()

    assert main(["detect"], stdout=out) == 0

    text = out.getvalue()
    assert asked == [True]
    assert "source:    workload_identity" in text
    assert f"with enable_azure_proxy=True, token requests go to {emulator.url}" in text
    assert "AZURE_KUBERNETES_SNI_NAME" in text
    assert emulator.requests == []


def test_detect_says_when_the_proxy_configuration_would_be_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/f")
    monkeypatch.setenv("AZURE_TENANT_ID", "t")
    monkeypatch.setenv("AZURE_KUBERNETES_SNI_NAME", "x.invalid")
    out = io.StringIO()

    assert main(["detect"], stdout=out) == 0

    assert (
        "enable_azure_proxy=True would refuse this: AZURE_KUBERNETES_SNI_NAME is set without"
        in out.getvalue()
    )
