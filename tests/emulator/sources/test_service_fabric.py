"""msi_credential/emulator/sources/service_fabric.py: Service Fabric's side of the wire (https with the given
certificate, ``principalId`` as its only selector, both api-versions)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from msi_credential.emulator import decode_jwt

from ..http_calls import IDENTITY, peer_certificate, token_request


def test_service_fabric_serves_tls_with_the_given_certificate(
    emulator_factory: Any, tls_cert: tuple[str, str]
) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)

    der = peer_certificate(emulator)
    answer = token_request(emulator, token_sha256_to_refresh="ab" * 32, xms_cc="cp1")

    assert (
        hashlib.sha1(der).hexdigest() == emulator.thumbprint == emulator.environ["IDENTITY_SERVER_THUMBPRINT"]
    )
    assert answer.status == 200
    assert isinstance(answer.json()["expires_on"], int)
    [request] = emulator.requests  # the bare handshake recorded nothing
    assert request.scheme == "https"
    assert request.query["token_sha256_to_refresh"] == "ab" * 32
    assert request.query["xms_cc"] == "cp1"


@pytest.mark.parametrize("version", ["2020-05-01", "2019-07-01-preview"])
def test_service_fabric_answers_the_identity_named_by_principal_id_and_ignores_a_client_id(
    emulator_factory: Any, version: str
) -> None:
    emulator = emulator_factory("service_fabric", tls=True, identities=[IDENTITY])

    chosen = token_request(emulator, **{"api-version": version, "principalId": IDENTITY.object_id.upper()})
    ignored = token_request(emulator, **{"api-version": version, "client_id": IDENTITY.client_id})
    unknown = token_request(emulator, **{"api-version": version, "principalId": "no-such-identity"})

    assert chosen.status == 200, chosen.body
    assert decode_jwt(chosen.json()["access_token"])["oid"] == IDENTITY.object_id
    # as the real token service: a client id is no selector there, so the application's default identity answers
    assert ignored.status == 200, ignored.body
    assert decode_jwt(ignored.json()["access_token"])["oid"] == emulator.system_identity.object_id
    assert unknown.status == 404 and unknown.json()["error"]["code"] == "ManagedIdentityNotFound"
