"""msi_credential/emulator/sources/_endpoint.py: what every token endpoint does the same way, one body per behaviour
over the sources (the token answered, the variables, identity selection, the api-versions and selector names each
takes, paths and methods); spoken to with http.client."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from msi_credential.emulator import decode_jwt

from ..http_calls import (
    API_VERSIONS,
    EXPECTED_ENVIRON,
    IDENTITY,
    OLDER_API_VERSIONS,
    RESOURCE,
    TENANT,
    call,
    token_request,
)

# Sources whose answer carries its times as strings.
STRING_TIMES = {"imds", "azure_arc", "cloud_shell"}


@pytest.mark.parametrize("source", sorted(EXPECTED_ENVIRON))
def test_each_source_issues_an_entra_v1_token(emulator_factory: Any, source: str) -> None:
    emulator = emulator_factory(source, token_lifetime=1800)
    assert set(emulator.environ) == EXPECTED_ENVIRON[source]
    assert emulator.url.startswith("https://" if source == "service_fabric" else "http://127.0.0.1:")
    before = int(time.time())

    answer = token_request(emulator)

    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.body)
    body = answer.json()
    assert body["resource"] == RESOURCE
    assert body["token_type"] == "Bearer"
    claims = decode_jwt(body["access_token"])
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["aud"] == RESOURCE
    assert claims["exp"] - claims["iat"] == 1800 + 60
    assert claims["nbf"] == claims["iat"]
    assert before + 1800 <= claims["exp"] <= int(time.time()) + 1800
    assert claims["oid"] == claims["sub"] == emulator.system_identity.object_id
    assert claims["tid"] == TENANT
    assert claims["appid"] == emulator.system_identity.client_id
    assert claims["ver"] == "1.0"
    assert "xms_mirid" not in claims
    if source in STRING_TIMES:
        assert body["expires_in"] == body["ext_expires_in"] == "1800"
        assert body["expires_on"] == str(claims["exp"])
        assert body["not_before"] == str(claims["nbf"])
    elif source == "app_service":
        assert body["expires_on"] == str(claims["exp"])
        assert body["client_id"] == emulator.system_identity.client_id
    else:
        assert body["expires_on"] == claims["exp"]
    assert emulator.tokens_issued == 1
    assert emulator.issued_tokens() == [body["access_token"]]


def test_environ_points_at_the_emulator(emulator_factory: Any) -> None:
    imds = emulator_factory("imds")
    arc = emulator_factory("azure_arc")
    machine_learning = emulator_factory(
        "machine_learning", default_client_id="ffffffff-0000-0000-0000-000000000000"
    )

    assert imds.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] + "/metadata/identity/oauth2/token" == imds.url
    assert arc.environ["IDENTITY_ENDPOINT"] == arc.url
    assert arc.url.startswith(arc.environ["IMDS_ENDPOINT"] + "/")
    assert machine_learning.environ["DEFAULT_IDENTITY_CLIENT_ID"] == "ffffffff-0000-0000-0000-000000000000"
    assert machine_learning.url.endswith("/MSI/auth")
    assert imds.credential_kwargs == {}
    assert os.path.isdir(arc.credential_kwargs["_arc_key_directory"])


# ---------------------------------------------------------------------------------------------- identities


@pytest.mark.parametrize(
    ("source", "wire_name", "attribute"),
    [
        ("imds", "client_id", "client_id"),
        ("imds", "object_id", "object_id"),
        ("imds", "msi_res_id", "resource_id"),
        ("app_service", "client_id", "client_id"),
        ("app_service", "object_id", "object_id"),
        ("app_service", "mi_res_id", "resource_id"),
        ("machine_learning", "clientid", "client_id"),
    ],
)
def test_user_assigned_identity_is_selected_case_insensitively(
    emulator_factory: Any, source: str, wire_name: str, attribute: str
) -> None:
    emulator = emulator_factory(source, identities=[IDENTITY])

    answer = token_request(emulator, **{wire_name: getattr(IDENTITY, attribute).upper()})

    assert answer.status == 200, answer.body
    claims = decode_jwt(answer.json()["access_token"])
    assert claims["oid"] == IDENTITY.object_id
    assert claims["appid"] == IDENTITY.client_id
    assert claims["xms_mirid"] == IDENTITY.resource_id


def test_more_than_one_selector_is_a_bad_request(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", identities=[IDENTITY])

    answer = token_request(emulator, client_id=IDENTITY.client_id, object_id=IDENTITY.object_id)

    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"


# ---------------------------------------------------------------------------------------------- strict checks


# The emulator takes its api-versions and selector names from the engine's source modules, so a wrong value there
# would pass every credential test: these pin them over the wire as literals (the happy paths above send the right
# ones, API_VERSIONS; tests/engine/sources/ pins the engine's).
@pytest.mark.parametrize("source", sorted(API_VERSIONS))
def test_each_source_takes_only_its_documented_api_version(emulator_factory: Any, source: str) -> None:
    emulator = emulator_factory(source, tls=True) if source == "service_fabric" else emulator_factory(source)
    older = OLDER_API_VERSIONS.get(source, ())
    others = sorted(set(API_VERSIONS.values()) - {API_VERSIONS[source]} - set(older))

    assert token_request(emulator).status == 200
    for version in older:
        answer = token_request(emulator, **{"api-version": version})
        assert answer.status == 200, (version, answer.body)
    for version in others:
        answer = token_request(emulator, **{"api-version": version})
        assert answer.status == 400, (version, answer.body)


@pytest.mark.parametrize(
    ("source", "taken", "ignored"),
    [
        ("imds", {"client_id", "object_id", "msi_res_id"}, {"mi_res_id", "clientid"}),
        ("azure_arc", {"client_id", "object_id", "msi_res_id"}, {"mi_res_id", "clientid"}),
        ("app_service", {"client_id", "object_id", "mi_res_id"}, {"msi_res_id", "clientid"}),
        ("machine_learning", {"clientid"}, {"client_id", "object_id", "msi_res_id", "mi_res_id"}),
        (
            "service_fabric",
            {"principalId"},
            {"client_id", "object_id", "msi_res_id", "mi_res_id", "clientid"},
        ),
    ],
)
def test_each_source_takes_only_its_documented_selector_names(
    emulator_factory: Any, source: str, taken: set[str], ignored: set[str]
) -> None:
    emulator = emulator_factory(source, tls=True) if source == "service_fabric" else emulator_factory(source)
    for name in sorted(taken):
        answer = token_request(emulator, **{name: "no-such-identity"})
        assert answer.status in (400, 404), (name, answer.body)  # looked up, and not found
    for name in sorted(ignored):
        answer = token_request(emulator, **{name: "no-such-identity"})
        assert answer.status == 200, (name, answer.body)  # not a selector here: the system identity answers


@pytest.mark.parametrize("source", ["imds", "app_service", "azure_arc", "machine_learning"])
def test_wrong_or_missing_api_version_is_a_bad_request(emulator_factory: Any, source: str) -> None:
    emulator = emulator_factory(source)
    headers = {"Metadata": "true", "X-IDENTITY-HEADER": emulator.secret, "secret": emulator.secret}

    wrong = call(emulator, query={"api-version": "1999-01-01", "resource": RESOURCE}, headers=headers)
    missing = call(emulator, query={"resource": RESOURCE}, headers=headers)
    no_resource = call(emulator, query={"api-version": API_VERSIONS[source]}, headers=headers)

    assert wrong.status == missing.status == no_resource.status == 400


def test_wrong_path_is_404_and_wrong_method_is_405(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")

    missing = call(emulator, path="/metadata/instance", headers={"Metadata": "true"})
    post = call(
        emulator,
        "POST",
        query={"api-version": "2018-02-01", "resource": RESOURCE},
        headers={"Metadata": "true"},
    )

    assert missing.status == 404
    assert post.status == 405 and post.headers["allow"] == "GET"
