"""Service Fabric through the public credential, both faces: HTTPS pinned to IDENTITY_SERVER_THUMBPRINT."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trustme

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential.emulator import Fault, decode_jwt

VAULT = "https://vault.azure.net/.default"


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[str, str]:
    """A server certificate for 127.0.0.1 from a throwaway CA."""
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


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
