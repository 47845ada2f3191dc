"""App Service and Azure Functions (``_engine/sources/app_service.py``): its rules through the scripted driver
(tests/engine/scripted.py, no sockets), then its reading of error answers (``read_error``) called directly. Its request,
and what it does like every source through the credential against the emulator: test_spec.py."""

from __future__ import annotations

import pytest

from msi_credential import ManagedIdentitySource
from msi_credential._engine.response import error_from_response
from msi_credential._errors import CredentialUnavailableError
from msi_credential._source import ManagedIdentitySource as S

from ..scripted import (
    APP_SERVICE,
    Clock,
    Script,
    answer,
    check_error,
    engine,
    error_for,
    error_response,
    is_failed,
    token_response,
)
from ..test_response import APP_SERVICE_BODY
from .support import RESOURCE, failure

# ------------------------------------------------------------------------ the engine's rules, scripted


def test_app_service_never_sends_client_capabilities() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("as"))

    script.run(engine(APP_SERVICE, clock, client_capabilities=["cp1"]).acquire(RESOURCE))

    assert "xms_cc" not in dict(script.sent[0].params)


def test_a_401_from_a_source_without_a_challenge_is_its_http_error() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(401))

    error = failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE))

    check_error(error, "server_error", ManagedIdentitySource.APP_SERVICE, status=401)
    assert script.reads == [] and len(script.sent) == 1


def test_a_configuration_problem_is_raised_with_its_message() -> None:
    clock = Clock()
    environ = {"IDENTITY_ENDPOINT": "http://10.0.0.1/msi/token", "IDENTITY_HEADER": "h"}

    error = failure(Script(clock), engine(environ, clock).acquire(RESOURCE))

    check_error(error, "invalid_endpoint", ManagedIdentitySource.APP_SERVICE)
    assert str(error).startswith("IDENTITY_ENDPOINT must be an http(s) URL to a loopback or link-local host")


# ------------------------------------------------------------------------- read_error, called directly
# App Service's own reading of error answers (``sources/app_service.py``): a 400 naming the managed identity.


@pytest.mark.parametrize(
    "message", ["Unable to load the proper Managed Identity.", "No managed identity found for client id x"]
)
def test_app_service_400_naming_a_managed_identity_is_unavailable_identity_not_found(message: str) -> None:
    body = {"statusCode": 400, "message": message, "correlationId": "app-corr"}
    error = error_from_response(answer(400, body), source=S.APP_SERVICE)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "identity_not_found"
    assert error.correlation_id == "app-corr"


def test_app_service_other_400_is_failed() -> None:
    body = {"statusCode": 400, "message": "Invalid resource", "correlationId": "c"}
    error = error_from_response(answer(400, body), source=S.APP_SERVICE)
    assert is_failed(error)
    assert error.error_code == "http_400"


@pytest.mark.parametrize("source", [S.AZURE_ARC, S.CLOUD_SHELL, S.MACHINE_LEARNING, S.WORKLOAD_IDENTITY])
def test_managed_identity_message_is_only_unavailable_for_app_service(source: S) -> None:
    error = error_from_response(answer(400, APP_SERVICE_BODY), source=source)
    assert is_failed(error)


def test_app_service_400_about_the_managed_identity_says_it_could_not_load_it() -> None:
    error = error_for(400, b'{"message": "Unable to load the proper Managed Identity."}', S.APP_SERVICE)
    assert error.error_code == "identity_not_found"
    assert error.message == (
        "App Service managed identity endpoint could not load the managed identity (HTTP 400): "
        "Unable to load the proper Managed Identity."
    )
