"""IMDS (VMs, AKS, Container Instances) through the public credential, both faces, against the emulator."""

from __future__ import annotations

import time
from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

STORAGE = "https://storage.azure.com/.default"
IDENTITY = UserAssignedIdentity(
    client_id="11111111-1111-1111-1111-111111111111",
    object_id="22222222-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
)


def test_imds_token_is_issued_by_sts_and_lives_about_an_hour(face: Any, emulator_factory: Any) -> None:
    # The request itself: test_credential_sources.py::test_source_returns_a_token_for_the_audience_and_sends_its_exact_request
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    token = credential.get_token(STORAGE)

    claims = decode_jwt(token.token)
    assert claims["iss"].startswith("https://sts.windows.net/")
    assert token.expires_on > time.time() + 3000


def test_imds_identity_config_spelling_is_accepted(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", identities=[IDENTITY])
    credential = face.credential(emulator, identity_config={"object_id": IDENTITY.object_id})

    credential.get_token(STORAGE)

    assert emulator.requests[0].query["object_id"] == IDENTITY.object_id


def test_imds_invalid_resource_fails(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(400, {"error": "invalid_resource", "error_description": "AADSTS500011: resource not found"})
    )
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token("https://nope.example/.default")

    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.error_code == "invalid_resource"


def test_imds_unreachable_is_unavailable_at_once(face: Any, unused_port: int) -> None:
    credential = face.credential(
        _environ={"AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{unused_port}"}, retry_total=0
    )

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"


def test_imds_non_json_answer_means_not_imds(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(404, "<html>not here</html>", {"Content-Type": "text/html"}), *[Fault(404, "<html/>")] * 3
    )
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"


@pytest.mark.parametrize("supplied", [False, True], ids=["own_transport", "supplied_requests_transport"])
def test_imds_redirect_at_first_contact_is_an_unexpected_redirect(
    face: Any, emulator_factory: Any, supplied: bool
) -> None:
    """A 3xx with a JSON body is IMDS refusing by redirect, on both faces. requests reads a redirect's body before
    handing the response back (a plain session does, even with redirects off): the body must not look empty."""
    emulator = emulator_factory("imds")
    emulator.script(Fault(301, {"error": "moved"}, {"Location": "http://127.0.0.1:9/steal"}))
    kwargs: dict[str, Any] = {}
    if supplied:
        from azure.core.pipeline.transport import AsyncioRequestsTransport, RequestsTransport

        kwargs["transport"] = AsyncioRequestsTransport() if face.is_async else RequestsTransport()
    credential = face.credential(emulator, **kwargs)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "unexpected_redirect"
    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.status_code == 301
    assert len(emulator.requests) == 1


def test_imds_gone_is_retried_seven_times_ten_seconds_apart(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(*[Fault(410)] * 7)
    credential = face.credential(emulator)

    credential.get_token(STORAGE)

    assert len(emulator.requests) == 8
    assert face.sleeps == [10.0] * 7


def test_imds_bad_request_is_not_retried(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(403, {"error": "forbidden", "error_description": "no"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "forbidden"
    assert len(emulator.requests) == 1
    assert face.sleeps == []


def test_imds_claims_bypass_the_cache(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    first = credential.get_token(STORAGE)
    second = credential.get_token(STORAGE, claims='{"access_token":{"nbf":{"essential":true}}}')
    third = credential.get_token(STORAGE)

    assert emulator.tokens_issued == 2
    assert first.token != second.token
    assert third.token == second.token
    assert "claims" not in emulator.requests[1].query
