"""App Service and Azure Functions (``_engine/sources/app_service.py``): its rules through the scripted driver
(tests/engine/scripted.py, no sockets). Its request, and what it does like every source through the credential against
the emulator: test_spec.py."""

from __future__ import annotations

from msi_credential import ManagedIdentitySource

from ..scripted import APP_SERVICE, Clock, Script, engine, error_response, token_response
from .support import RESOURCE, check, failure

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

    check(error, "server_error", ManagedIdentitySource.APP_SERVICE, status=401)
    assert script.reads == [] and len(script.sent) == 1


def test_a_configuration_problem_is_raised_with_its_message() -> None:
    clock = Clock()
    environ = {"IDENTITY_ENDPOINT": "http://10.0.0.1/msi/token", "IDENTITY_HEADER": "h"}

    error = failure(Script(clock), engine(environ, clock).acquire(RESOURCE))

    check(error, "invalid_endpoint", ManagedIdentitySource.APP_SERVICE)
    assert str(error).startswith("IDENTITY_ENDPOINT must be an http(s) URL to a loopback or link-local host")
