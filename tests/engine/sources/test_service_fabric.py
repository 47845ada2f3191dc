"""Service Fabric (``_engine/sources/service_fabric.py``): the capabilities and the revocation hash in the request its
spec builds, its rules through the scripted driver (tests/engine/scripted.py, no sockets), then through the public
credential on both faces against the emulator over HTTPS (``tls_cert``), last its reading of error answers
(``read_error``) called directly. Its request (pinned to IDENTITY_SERVER_THUMBPRINT, with the secret header), with
every source's: test_spec.py."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential._engine.effects import TransportFailure
from msi_credential._engine.response import error_from_response
from msi_credential._engine.sources import RequestParts
from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

from ..scripted import Clock, Script, answer, engine, error_for, is_failed, token_response
from .support import RESOURCE, SERVICE_FABRIC, build, failure

# ----------------------------------------------------------------------------------------- the request


def test_service_fabric_sends_xms_cc_when_capabilities_are_set() -> None:
    parts = RequestParts(
        resource=RESOURCE, connect_timeout=2.0, read_timeout=10.0, capabilities=("cp1", "cp2")
    )
    request = build(S.SERVICE_FABRIC, parts=parts)
    assert request.params == (
        ("api-version", "2020-05-01"),
        ("resource", RESOURCE),
        ("xms_cc", "cp1,cp2"),
    )


def test_service_fabric_sends_token_sha256_to_refresh_for_revocation() -> None:
    digest = "a" * 64
    parts = RequestParts(
        resource=RESOURCE,
        connect_timeout=2.0,
        read_timeout=10.0,
        capabilities=("cp1",),
        token_sha256_to_refresh=digest,
        claims='{"access_token":{"nbf":{"essential":true}}}',
    )
    request = build(S.SERVICE_FABRIC, parts=parts)
    assert request.params == (
        ("api-version", "2020-05-01"),
        ("resource", RESOURCE),
        ("xms_cc", "cp1"),
        ("token_sha256_to_refresh", digest),
    )
    assert "claims" not in dict(request.params)


# ------------------------------------------------------------------------ the engine's rules, scripted


def test_service_fabric_sends_client_capabilities_as_xms_cc() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("sf"))

    script.run(engine(SERVICE_FABRIC, clock, client_capabilities=["cp1", "cp2"]).acquire(RESOURCE))

    assert dict(script.sent[0].params)["xms_cc"] == "cp1,cp2"


def test_a_plain_refresh_on_service_fabric_names_no_token_to_revoke() -> None:
    clock = Clock()
    credential_engine = engine(SERVICE_FABRIC, clock)
    script = Script(clock).queue(token_response("old"), token_response("new"))
    old = script.run(credential_engine.acquire(RESOURCE))
    assert old.refresh_on is not None
    clock.now = old.refresh_on

    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"
    assert all("token_sha256_to_refresh" not in dict(request.params) for request in script.sent)


def test_a_certificate_pin_mismatch_says_nothing_was_sent() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("pin_mismatch", "sha1 differs"))

    error = failure(script, engine(SERVICE_FABRIC, clock).acquire(RESOURCE))

    assert error.error_code == "thumbprint_mismatch" and len(script.sent) == 1
    assert str(error).startswith(
        "Service Fabric managed identity endpoint: the server certificate does not match "
        "IDENTITY_SERVER_THUMBPRINT; nothing was sent"
    )


# -------------------------------------------- through the credential, both faces, against the emulator


VAULT = "https://vault.azure.net/.default"


IDENTITY = UserAssignedIdentity(
    client_id="aaaaaaaa-1111-1111-1111-111111111111",
    object_id="bbbbbbbb-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a",
)


TOKEN_PATH = "/metadata/identity/oauth2/token"


def test_service_fabric_thumbprint_may_have_colons_and_upper_case(
    face: Any, emulator_factory: Any, tls_cert: tuple[str, str]
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    spaced = ":".join(emulator.thumbprint[i : i + 2] for i in range(0, 40, 2)).upper()
    credential = face.credential(emulator, _environ=dict(emulator.environ, IDENTITY_SERVER_THUMBPRINT=spaced))

    assert credential.get_token(VAULT).token


def test_service_fabric_wrong_thumbprint_sends_nothing(
    face: Any, emulator_factory: Any, tls_cert: tuple[str, str]
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    wrong = hashlib.sha1(b"another certificate").hexdigest()
    credential = face.credential(emulator, _environ=dict(emulator.environ, IDENTITY_SERVER_THUMBPRINT=wrong))

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "thumbprint_mismatch"
    assert emulator.requests == []  # the server received no request, so never the secret
    assert emulator.environ["IDENTITY_HEADER"] not in str(caught.value)


def test_service_fabric_malformed_thumbprint_is_refused(face: Any) -> None:
    environ = {
        "IDENTITY_ENDPOINT": "https://127.0.0.1:2377/metadata/identity/oauth2/token",
        "IDENTITY_HEADER": "sf-secret",
        "IDENTITY_SERVER_THUMBPRINT": "not-a-thumbprint",
    }
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "invalid_thumbprint"


def test_service_fabric_claims_send_revocation_hash_and_capabilities(
    face: Any, emulator_factory: Any, tls_cert: tuple[str, str]
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    credential = face.credential(emulator, client_capabilities=["cp1"])

    first = credential.get_token(VAULT)
    second = credential.get_token(VAULT, claims='{"access_token":{"nbf":{"essential":true}}}')

    assert second.token != first.token
    plain, revoking = emulator.requests
    assert plain.query["xms_cc"] == "cp1"
    assert "token_sha256_to_refresh" not in plain.query
    assert revoking.query["token_sha256_to_refresh"] == hashlib.sha256(first.token.encode()).hexdigest()
    assert "claims" not in revoking.query


@pytest.mark.parametrize(
    ("status", "code", "error_code", "unavailable"),
    [
        (404, "ManagedIdentityNotFound", "identity_not_found", True),
        (401, "SecretHeaderNotFound", "secret_header_not_found", False),
        (400, "ArgumentNullOrEmpty", "invalid_resource", False),
        (400, "InvalidApiVersion", "invalid_api_version", False),
    ],
)
def test_service_fabric_error_codes_are_mapped(
    face: Any,
    emulator_factory: Any,
    tls_cert: tuple[str, str],
    status: int,
    code: str,
    error_code: str,
    unavailable: bool,
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    body = {"error": {"correlationId": "corr-1", "code": code, "message": "m"}}
    emulator.script(Fault(status, body))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == error_code
    assert caught.value.correlation_id == "corr-1"
    assert isinstance(caught.value, CredentialUnavailableError) is unavailable


def test_service_fabric_reads_expires_on_as_a_json_number(
    face: Any, emulator_factory: Any, tls_cert: tuple[str, str]
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    credential = face.credential(emulator)

    token = credential.get_token(VAULT)

    assert token.expires_on == decode_jwt(token.token)["exp"]


@pytest.mark.parametrize(
    ("arguments", "query"),
    [
        ({}, "api-version=2020-05-01&resource=https://vault.azure.net"),
        (
            {"object_id": IDENTITY.object_id},
            f"api-version=2020-05-01&resource=https://vault.azure.net&principalId={IDENTITY.object_id}",
        ),
        (
            {"identity_config": {"object_id": IDENTITY.object_id}},
            f"api-version=2020-05-01&resource=https://vault.azure.net&principalId={IDENTITY.object_id}",
        ),
    ],
    ids=["system-assigned", "object_id", "identity_config"],
)
def test_service_fabric_sends_the_stable_api_version_and_the_object_id_as_principal_id(
    face: Any, emulator_factory: Any, tls_cert: tuple[str, str], arguments: dict[str, Any], query: str
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert, identities=[IDENTITY])
    credential = face.credential(emulator, **arguments)

    token = credential.get_token(VAULT)

    [request] = emulator.requests
    assert request.request_line == f"GET {TOKEN_PATH}?{query} HTTP/1.1"
    expected = IDENTITY if arguments else emulator.system_identity
    assert decode_jwt(token.token)["oid"] == expected.object_id


@pytest.mark.parametrize("keyword", ["client_id", "resource_id"])
def test_service_fabric_refuses_a_client_or_resource_id_and_names_the_object_id(
    face: Any, emulator_factory: Any, tls_cert: tuple[str, str], keyword: str
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert, identities=[IDENTITY])
    credential = face.credential(emulator, identity_config={keyword: getattr(IDENTITY, keyword)})

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.error_code == "user_assigned_not_supported"
    assert str(caught.value) == (
        "Service Fabric managed identity endpoint does not support a user-assigned identity selected by "
        f"{keyword}; select it by its object id (object_id=) instead"
    )
    assert emulator.requests == []


# ------------------------------------------------------------------------- read_error, called directly
# Service Fabric's own reading of error answers (``sources/service_fabric.py``): 404 or ManagedIdentityNotFound, its
# own codes.


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
