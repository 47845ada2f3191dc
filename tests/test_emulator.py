"""The emulator on its own, spoken to with http.client: every source's wire protocol, faults and recording."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import socket
import ssl
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import pytest
import trustme

from msi_credential.emulator import (
    Emulator,
    EmulatorSetupError,
    Fault,
    RecordedRequest,
    UserAssignedIdentity,
    _wire,
    decode_jwt,
    mint_jwt,
)

from .skips import skip_or_fail_in_ci

RESOURCE = "https://storage.azure.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
IDENTITY = UserAssignedIdentity(
    client_id="11111111-aaaa-1111-1111-111111111111",
    object_id="22222222-bbbb-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
)
API_VERSIONS = {
    "imds": "2018-02-01",
    "app_service": "2019-08-01",
    "azure_arc": "2020-06-01",
    "service_fabric": "2020-05-01",
    "machine_learning": "2017-09-01",
}
# Older api-versions an endpoint still takes: Service Fabric's preview, which azure-identity and msal-python send.
OLDER_API_VERSIONS = {"service_fabric": ("2019-07-01-preview",)}


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    emulator: Emulator,
    method: str = "GET",
    *,
    path: Optional[str] = None,
    query: Optional[Mapping[str, str]] = None,
    headers: Optional[Mapping[str, str]] = None,
    body: Optional[bytes] = None,
) -> Answer:
    """One request on a fresh connection; HTTPS without certificate checks."""
    parts = urlsplit(emulator.url)
    target = (path or parts.path) + ("?" + urlencode(query) if query else "")
    host, port = parts.hostname or "", parts.port or 0
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=5, context=_insecure_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def _insecure_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def token_request(emulator: Emulator, **params: str) -> Answer:
    """A request the emulator's source accepts, plus ``params``."""
    source = emulator.source.value
    if source == "cloud_shell":
        form = urlencode({"resource": RESOURCE, **params}).encode()
        headers = {"Metadata": "true", "Content-Type": "application/x-www-form-urlencoded"}
        return call(emulator, "POST", headers=headers, body=form)
    query = {"api-version": API_VERSIONS[source], "resource": RESOURCE, **params}
    secret = emulator.secret
    headers = {
        "imds": {"Metadata": "true"},
        "azure_arc": {"Metadata": "true"},
        "app_service": {"X-IDENTITY-HEADER": secret},
        "service_fabric": {"Secret": secret},
        "machine_learning": {"secret": secret, "Metadata": "true"},
    }[source]
    answer = call(emulator, query=query, headers=headers)
    if source == "azure_arc" and answer.status == 401:
        key = Path(_realm(answer)).read_text()
        answer = call(emulator, query=query, headers={**headers, "Authorization": f"Basic {key}"})
    return answer


def _realm(answer: Answer) -> str:
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Basic realm=")
    return challenge[len("Basic realm=") :]


@pytest.fixture
def emulators() -> Iterator[Any]:
    started: list[Emulator] = []

    def start(source: str = "imds", **kwargs: Any) -> Emulator:
        emulator = Emulator(source, **kwargs).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


# ---------------------------------------------------------------------------------------------- happy paths

EXPECTED_ENVIRON = {
    "imds": {"AZURE_POD_IDENTITY_AUTHORITY_HOST"},
    "app_service": {"IDENTITY_ENDPOINT", "IDENTITY_HEADER"},
    "azure_arc": {"IDENTITY_ENDPOINT", "IMDS_ENDPOINT"},
    "cloud_shell": {"MSI_ENDPOINT"},
    "service_fabric": {"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT"},
    "machine_learning": {"MSI_ENDPOINT", "MSI_SECRET"},
}
STRING_TIMES = {"imds", "azure_arc", "cloud_shell"}


@pytest.mark.parametrize("source", sorted(EXPECTED_ENVIRON))
def test_each_source_issues_an_entra_v1_token(emulators: Any, source: str) -> None:
    emulator = emulators(source, token_lifetime=1800)
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


def test_environ_points_at_the_emulator(emulators: Any) -> None:
    imds = emulators("imds")
    arc = emulators("azure_arc")
    machine_learning = emulators("machine_learning", default_client_id="ffffffff-0000-0000-0000-000000000000")

    assert imds.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] + "/metadata/identity/oauth2/token" == imds.url
    assert arc.environ["IDENTITY_ENDPOINT"] == arc.url
    assert arc.url.startswith(arc.environ["IMDS_ENDPOINT"] + "/")
    assert machine_learning.environ["DEFAULT_IDENTITY_CLIENT_ID"] == "ffffffff-0000-0000-0000-000000000000"
    assert machine_learning.url.endswith("/MSI/auth")
    assert imds.credential_kwargs == {}
    assert os.path.isdir(arc.credential_kwargs["_arc_key_directory"])


def test_tokens_are_distinct_and_lifetime_and_clock_apply(emulators: Any) -> None:
    emulator = emulators("imds", clock=lambda: 1_700_000_000.9)

    first = token_request(emulator).json()
    emulator.token_lifetime = 600
    second = token_request(emulator).json()

    assert first["access_token"] != second["access_token"]
    assert decode_jwt(first["access_token"])["exp"] == 1_700_000_000 + 3600
    assert decode_jwt(second["access_token"])["exp"] == 1_700_000_000 + 600
    assert second["expires_on"] == str(1_700_000_000 + 600)
    assert second["client_id"] == emulator.system_identity.client_id


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
    emulators: Any, source: str, wire_name: str, attribute: str
) -> None:
    emulator = emulators(source, identities=[IDENTITY])

    answer = token_request(emulator, **{wire_name: getattr(IDENTITY, attribute).upper()})

    assert answer.status == 200, answer.body
    claims = decode_jwt(answer.json()["access_token"])
    assert claims["oid"] == IDENTITY.object_id
    assert claims["appid"] == IDENTITY.client_id
    assert claims["xms_mirid"] == IDENTITY.resource_id


def test_unknown_identity_is_not_found_in_each_source_shape(emulators: Any) -> None:
    imds = emulators("imds")
    app_service = emulators("app_service")
    machine_learning = emulators("machine_learning")

    imds_answer = token_request(imds, client_id="nope")
    app_answer = token_request(app_service, object_id="nope")
    ml_answer = token_request(machine_learning, clientid="nope")

    assert imds_answer.status == 400
    assert imds_answer.json() == {"error": "invalid_request", "error_description": "Identity not found"}
    assert app_answer.status == 400
    assert app_answer.json()["statusCode"] == 400
    assert app_answer.json()["message"] == "Unable to load the proper Managed Identity."
    assert app_answer.json()["correlationId"]
    assert ml_answer.status == 400 and ml_answer.json()["correlationId"]
    assert imds.tokens_issued == app_service.tokens_issued == machine_learning.tokens_issued == 0


def test_more_than_one_selector_is_a_bad_request(emulators: Any) -> None:
    emulator = emulators("imds", identities=[IDENTITY])

    answer = token_request(emulator, client_id=IDENTITY.client_id, object_id=IDENTITY.object_id)

    assert answer.status == 400
    assert answer.json()["error"] == "invalid_request"


def test_app_service_ignores_msi_res_id(emulators: Any) -> None:
    emulator = emulators("app_service", identities=[IDENTITY])

    answer = token_request(emulator, msi_res_id=IDENTITY.resource_id)

    assert answer.status == 200
    assert decode_jwt(answer.json()["access_token"])["oid"] == emulator.system_identity.object_id


def test_machine_learning_default_client_id_is_the_system_identity(emulators: Any) -> None:
    default = "ffffffff-0000-0000-0000-000000000000"
    emulator = emulators("machine_learning", identities=[IDENTITY], default_client_id=default)

    answer = token_request(emulator, clientid=default)

    assert answer.status == 200
    claims = decode_jwt(answer.json()["access_token"])
    assert claims["oid"] == emulator.system_identity.object_id
    assert claims["appid"] == default


def test_cloud_shell_refuses_identity_parameters(emulators: Any) -> None:
    emulator = emulators("cloud_shell")

    answer = token_request(emulator, client_id=IDENTITY.client_id)

    assert answer.status == 400
    assert emulator.tokens_issued == 0


# ---------------------------------------------------------------------------------------------- Azure Arc


def test_arc_challenge_writes_a_key_file_and_accepts_it_once(emulators: Any) -> None:
    emulator = emulators("azure_arc")
    directory = emulator.credential_kwargs["_arc_key_directory"]
    query = {"api-version": "2020-06-01", "resource": RESOURCE}

    challenge = call(emulator, query=query, headers={"Metadata": "true"})

    assert challenge.status == 401
    path = _realm(challenge)
    assert os.path.isabs(path)
    assert os.path.dirname(path) == directory
    assert path.endswith(".key")
    key = Path(path).read_text()
    assert len(key) == 64 and int(key, 16) >= 0

    answer = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert answer.status == 200
    assert decode_jwt(answer.json()["access_token"])["aud"] == RESOURCE

    replay = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert replay.status == 401
    assert _realm(replay) != path
    assert [r.headers.get("authorization", "").startswith("Basic ") for r in emulator.requests] == [
        False,
        True,
        True,
    ]


def _arc_keys(emulator: Emulator) -> list[str]:
    directory = emulator.key_directory
    assert directory is not None
    return sorted(name for name in os.listdir(directory) if name.endswith(".key"))


def test_arc_key_file_is_deleted_once_its_challenge_is_answered(emulators: Any) -> None:
    emulator = emulators("azure_arc")

    for _ in range(20):
        assert token_request(emulator).status == 200  # a challenge, then the answer with its key

    assert _arc_keys(emulator) == []
    assert emulator.tokens_issued == 20


def test_arc_key_files_stay_bounded_however_many_challenges_go_unanswered(emulators: Any) -> None:
    from msi_credential.emulator.sources.azure_arc import MAX_ARC_KEYS

    emulator = emulators("azure_arc")
    query = {"api-version": "2020-06-01", "resource": RESOURCE}

    challenges = [call(emulator, query=query, headers={"Metadata": "true"}) for _ in range(3 * MAX_ARC_KEYS)]

    newest = [os.path.basename(_realm(answer)) for answer in challenges[-MAX_ARC_KEYS:]]
    assert _arc_keys(emulator) == sorted(newest)  # the oldest were retired, files and keys
    key = Path(_realm(challenges[-1])).read_text()
    answer = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert answer.status == 200
    retired = Path(_realm(challenges[0])).name
    assert retired not in _arc_keys(emulator)


def test_arc_expired_key_files_are_deleted(emulators: Any) -> None:
    from msi_credential.emulator.sources.azure_arc import ARC_KEY_VALIDITY

    now = [1_700_000_000.0]
    emulator = emulators("azure_arc", clock=lambda: now[0])
    query = {"api-version": "2020-06-01", "resource": RESOURCE}
    first = call(emulator, query=query, headers={"Metadata": "true"})
    key = Path(_realm(first)).read_text()

    now[0] += ARC_KEY_VALIDITY
    second = call(emulator, query=query, headers={"Metadata": "true"})

    assert _arc_keys(emulator) == [Path(_realm(second)).name]
    late = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert late.status == 401  # expired, and its file is gone


def test_arc_refuses_a_key_it_did_not_issue(emulators: Any) -> None:
    emulator = emulators("azure_arc")
    query = {"api-version": "2020-06-01", "resource": RESOURCE}

    answer = call(emulator, query=query, headers={"Metadata": "true", "Authorization": "Basic " + "0" * 64})

    assert answer.status == 401
    assert Path(_realm(answer)).is_file()
    assert emulator.tokens_issued == 0


@pytest.mark.parametrize(
    ("wire_name", "attribute"),
    [("client_id", "client_id"), ("object_id", "object_id"), ("msi_res_id", "resource_id")],
)
def test_arc_echoes_the_requested_selector(emulators: Any, wire_name: str, attribute: str) -> None:
    emulator = emulators("azure_arc", identities=[IDENTITY])

    answer = token_request(emulator, **{wire_name: getattr(IDENTITY, attribute)})

    body = answer.json()
    assert body[wire_name] == getattr(IDENTITY, attribute)
    assert decode_jwt(body["access_token"])["oid"] == IDENTITY.object_id
    assert {"client_id", "object_id", "msi_res_id"} & set(body) == {wire_name}


def test_arc_key_files_are_removed_on_stop_from_a_given_directory(tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("keep me")
    emulator = Emulator("azure_arc", arc_key_directory=str(tmp_path)).start()
    try:
        assert emulator.credential_kwargs == {"_arc_key_directory": str(tmp_path)}
        challenge = call(
            emulator, query={"api-version": "2020-06-01", "resource": RESOURCE}, headers={"Metadata": "true"}
        )
        assert Path(_realm(challenge)).is_file()
    finally:
        emulator.stop()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_arc_scripted_fault_consumes_a_request_at_any_step(emulators: Any) -> None:
    emulator = emulators("azure_arc")
    emulator.script(Fault(503))

    faulted = call(
        emulator, query={"api-version": "2020-06-01", "resource": RESOURCE}, headers={"Metadata": "true"}
    )
    answer = token_request(emulator)

    assert faulted.status == 503
    assert answer.status == 200
    assert len(emulator.requests) == 3


# ---------------------------------------------------------------------------------------------- Service Fabric


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[str, str]:
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def _peer_certificate(emulator: Emulator) -> bytes:
    parts = urlsplit(emulator.url)
    address = (parts.hostname or "", parts.port or 0)
    with socket.create_connection(address, timeout=5) as raw, _insecure_context().wrap_socket(raw) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_service_fabric_serves_tls_with_the_given_certificate(
    emulators: Any, tls_cert: tuple[str, str]
) -> None:
    emulator = emulators("service_fabric", tls_cert=tls_cert)

    der = _peer_certificate(emulator)
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
    emulators: Any, version: str
) -> None:
    emulator = emulators("service_fabric", tls=True, identities=[IDENTITY])

    chosen = token_request(emulator, **{"api-version": version, "principalId": IDENTITY.object_id.upper()})
    ignored = token_request(emulator, **{"api-version": version, "client_id": IDENTITY.client_id})
    unknown = token_request(emulator, **{"api-version": version, "principalId": "no-such-identity"})

    assert chosen.status == 200, chosen.body
    assert decode_jwt(chosen.json()["access_token"])["oid"] == IDENTITY.object_id
    # as the real token service: a client id is no selector there, so the application's default identity answers
    assert ignored.status == 200, ignored.body
    assert decode_jwt(ignored.json()["access_token"])["oid"] == emulator.system_identity.object_id
    assert unknown.status == 404 and unknown.json()["error"]["code"] == "ManagedIdentityNotFound"


def test_service_fabric_makes_its_own_certificate(emulators: Any) -> None:
    emulator = emulators("service_fabric")

    der = _peer_certificate(emulator)

    assert hashlib.sha1(der).hexdigest() == emulator.thumbprint
    assert token_request(emulator).status == 200


def test_service_fabric_without_the_emulator_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    emulator = Emulator("service_fabric")

    with pytest.raises(EmulatorSetupError, match=r"pip install 'msi-credential\[emulator\]'"):
        emulator.start()

    assert emulator.ca_file is None
    assert "not started" in repr(emulator)


def test_service_fabric_errors_have_its_shape(emulators: Any, tls_cert: tuple[str, str]) -> None:
    emulator = emulators("service_fabric", tls_cert=tls_cert)
    good = {"api-version": "2020-05-01", "resource": RESOURCE}

    no_secret = call(emulator, query=good)
    wrong_secret = call(emulator, query=good, headers={"Secret": "wrong"})
    no_resource = call(emulator, query={"api-version": "2020-05-01"}, headers={"Secret": emulator.secret})
    bad_version = call(
        emulator, query={**good, "api-version": "2018-02-01"}, headers={"Secret": emulator.secret}
    )

    assert no_secret.status == wrong_secret.status == 401
    error = no_secret.json()["error"]
    assert error["code"] == "SecretHeaderNotFound"
    assert error["message"] == "Secret is not found in the request headers."
    assert error["correlationId"]
    assert b"wrong" not in wrong_secret.body
    assert no_resource.status == 400 and no_resource.json()["error"]["code"] == "ArgumentNullOrEmpty"
    assert bad_version.status == 400 and bad_version.json()["error"]["code"] == "InvalidApiVersion"


def test_failed_handshake_does_not_break_the_server(emulators: Any, tls_cert: tuple[str, str]) -> None:
    emulator = emulators("service_fabric", tls_cert=tls_cert)
    parts = urlsplit(emulator.url)

    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP to a TLS port
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5):
        pass  # hang up before the handshake

    assert token_request(emulator).status == 200
    assert len(emulator.requests) == 1


# ---------------------------------------------------------------------------------------------- strict checks


# The emulator takes its api-versions and selector names from the engine's source modules, so a wrong value there
# would pass every credential test: these pin them over the wire as literals (the happy paths above send the right
# ones, API_VERSIONS; test_sources.py pins the engine's).
@pytest.mark.parametrize("source", sorted(API_VERSIONS))
def test_each_source_takes_only_its_documented_api_version(emulators: Any, source: str) -> None:
    emulator = emulators(source, tls=True) if source == "service_fabric" else emulators(source)
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
    emulators: Any, source: str, taken: set[str], ignored: set[str]
) -> None:
    emulator = emulators(source, tls=True) if source == "service_fabric" else emulators(source)
    for name in sorted(taken):
        answer = token_request(emulator, **{name: "no-such-identity"})
        assert answer.status in (400, 404), (name, answer.body)  # looked up, and not found
    for name in sorted(ignored):
        answer = token_request(emulator, **{name: "no-such-identity"})
        assert answer.status == 200, (name, answer.body)  # not a selector here: the system identity answers


def test_imds_requires_the_metadata_header(emulators: Any) -> None:
    emulator = emulators("imds")

    answer = call(emulator, query={"api-version": "2018-02-01", "resource": RESOURCE})

    assert answer.status == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": "Required metadata header not specified",
    }
    assert len(emulator.requests) == 1  # rejected requests are recorded too


@pytest.mark.parametrize("source", ["imds", "app_service", "azure_arc", "machine_learning"])
def test_wrong_or_missing_api_version_is_a_bad_request(emulators: Any, source: str) -> None:
    emulator = emulators(source)
    headers = {"Metadata": "true", "X-IDENTITY-HEADER": emulator.secret, "secret": emulator.secret}

    wrong = call(emulator, query={"api-version": "1999-01-01", "resource": RESOURCE}, headers=headers)
    missing = call(emulator, query={"resource": RESOURCE}, headers=headers)
    no_resource = call(emulator, query={"api-version": API_VERSIONS[source]}, headers=headers)

    assert wrong.status == missing.status == no_resource.status == 400


def test_app_service_secret_is_checked_without_being_echoed(emulators: Any) -> None:
    emulator = emulators("app_service")
    query = {"api-version": "2019-08-01", "resource": RESOURCE}

    missing = call(emulator, query=query)
    wrong = call(emulator, query=query, headers={"X-IDENTITY-HEADER": "wrong-secret-value"})

    assert missing.status == 401
    assert wrong.status == 403
    assert set(wrong.json()) == {"statusCode", "message", "correlationId"}
    assert b"wrong-secret-value" not in wrong.body


def test_machine_learning_secret_is_checked(emulators: Any) -> None:
    emulator = emulators("machine_learning")

    answer = call(
        emulator, query={"api-version": "2017-09-01", "resource": RESOURCE}, headers={"secret": "x"}
    )

    assert answer.status in (401, 403)
    assert emulator.tokens_issued == 0


def test_cloud_shell_requires_a_form_post(emulators: Any) -> None:
    emulator = emulators("cloud_shell")
    form = urlencode({"resource": RESOURCE}).encode()

    get = call(emulator, query={"resource": RESOURCE}, headers={"Metadata": "true"})
    json_body = call(
        emulator, "POST", headers={"Metadata": "true", "Content-Type": "application/json"}, body=b"{}"
    )
    no_metadata = call(
        emulator, "POST", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=form
    )

    assert get.status == 405 and get.headers["allow"] == "POST"
    assert json_body.status == 400
    assert no_metadata.status == 400
    assert emulator.tokens_issued == 0


def test_wrong_path_is_404_and_wrong_method_is_405(emulators: Any) -> None:
    emulator = emulators("imds")

    missing = call(emulator, path="/metadata/instance", headers={"Metadata": "true"})
    post = call(
        emulator,
        "POST",
        query={"api-version": "2018-02-01", "resource": RESOURCE},
        headers={"Metadata": "true"},
    )

    assert missing.status == 404
    assert post.status == 405 and post.headers["allow"] == "GET"


def test_repeated_query_parameter_is_a_bad_request(emulators: Any) -> None:
    emulator = emulators("imds")

    answer = call(
        emulator,
        path="/metadata/identity/oauth2/token?api-version=2018-02-01&resource=a&resource=b",
        headers={"Metadata": "true"},
    )

    assert answer.status == 400


def test_malformed_requests_do_not_crash_the_server(emulators: Any) -> None:
    emulator = emulators("imds")
    parts = urlsplit(emulator.url)
    address = (parts.hostname or "", parts.port or 0)

    for garbage in (
        b"\x00\xff nonsense\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ):
        with socket.create_connection(address, timeout=5) as raw:
            raw.sendall(garbage)
            raw.settimeout(2)
            with contextlib.suppress(OSError):
                raw.recv(4096)
    with socket.create_connection(address, timeout=5) as raw:  # headers only: refused before any body byte
        raw.sendall(b"POST /metadata/identity/oauth2/token HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n")
        too_large = raw.recv(4096)

    assert too_large.startswith(b"HTTP/1.1 413 ")
    assert token_request(emulator).status == 200


# ---------------------------------------------------------------------------------------------- faults


def test_scripted_faults_answer_in_order_then_normal_behaviour_resumes(emulators: Any) -> None:
    emulator = emulators("imds")
    emulator.script(Fault(500), Fault(429, headers={"Retry-After": "3"}), Fault(404, "<html/>"))

    answers = [token_request(emulator) for _ in range(4)]
    statuses = [answer.status for answer in answers]

    assert statuses == [500, 429, 404, 200]
    assert answers[0].json()["error"] == "internal_server_error"
    assert answers[1].headers["retry-after"] == "3"
    assert answers[2].body == b"<html/>"
    assert answers[2].headers["content-type"].startswith("text/plain")
    assert emulator.tokens_issued == 1


@pytest.mark.parametrize(
    ("source", "shape"),
    [("imds", {"error", "error_description"}), ("app_service", {"statusCode", "message", "correlationId"})],
)
def test_fault_without_body_gets_the_source_error_shape(emulators: Any, source: str, shape: set[str]) -> None:
    emulator = emulators(source)
    emulator.script(Fault(503))

    answer = token_request(emulator)

    assert answer.status == 503
    assert set(answer.json()) == shape


def test_fault_bodies_are_sent_verbatim(emulators: Any) -> None:
    emulator = emulators("app_service")
    emulator.script(
        Fault(200, b"not json"),
        Fault(200, {"access_token": "opaque", "expires_in": 60}),
        Fault(302, b"", {"Location": "http://127.0.0.1:9/"}),
    )

    bad = token_request(emulator)
    opaque = token_request(emulator)
    redirect = token_request(emulator)

    assert (bad.status, bad.body) == (200, b"not json")
    assert opaque.json() == {"access_token": "opaque", "expires_in": 60}
    assert opaque.headers["content-type"] == "application/json"
    assert redirect.status == 302 and redirect.headers["location"] == "http://127.0.0.1:9/"
    assert redirect.body == b""
    assert emulator.tokens_issued == 0


def test_success_fault_without_body_is_the_normal_answer_with_its_headers(emulators: Any) -> None:
    emulator = emulators("imds")
    emulator.script(Fault(200, headers={"X-Extra": "1"}))

    answer = token_request(emulator)

    assert answer.status == 200 and answer.headers["x-extra"] == "1"
    assert emulator.tokens_issued == 1


def test_reset_fault_closes_without_answering(emulators: Any) -> None:
    emulator = emulators("imds")
    emulator.script(Fault(reset=True))

    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        token_request(emulator)

    assert token_request(emulator).status == 200
    assert len(emulator.requests) == 2


def test_fault_and_emulator_delays(emulators: Any) -> None:
    emulator = emulators("imds")
    emulator.script(Fault(200, delay=0.1))

    started = time.monotonic()
    token_request(emulator)
    faulted = time.monotonic() - started
    emulator.delay = 0.1
    started = time.monotonic()
    token_request(emulator)
    delayed = time.monotonic() - started

    assert faulted >= 0.1
    assert delayed >= 0.1


def test_fault_arguments_are_checked(emulators: Any) -> None:
    emulator = emulators("imds")
    with pytest.raises(ValueError):
        Fault(99)
    with pytest.raises(TypeError):
        emulator.script(500)


# ---------------------------------------------------------------------------------------------- recording


def test_recorded_request_fields(emulators: Any) -> None:
    emulator = emulators("cloud_shell")

    token_request(emulator)

    [request] = emulator.requests
    assert isinstance(request, RecordedRequest)
    assert request.method == "POST"
    assert request.path == "/oauth2/token"
    assert request.query == {}
    assert request.form == {"resource": RESOURCE}
    assert request.body == urlencode({"resource": RESOURCE}).encode()
    assert request.headers["metadata"] == "true"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert all(name == name.lower() for name in request.headers)
    assert request.scheme == "http"


def test_recorded_request_repr_hides_secrets(emulators: Any) -> None:
    emulator = emulators("app_service")

    token_request(emulator)

    [request] = emulator.requests
    text = repr(request)
    assert "x-identity-header" in text
    assert "/msi/token" in text and "GET" in text
    assert emulator.secret not in text
    assert emulator.secret not in repr(emulator)


def test_clear_forgets_requests_faults_and_tokens(emulators: Any) -> None:
    emulator = emulators("imds")
    token_request(emulator)
    emulator.script(Fault(500))

    emulator.clear()

    assert emulator.requests == []
    assert emulator.tokens_issued == 0
    assert emulator.issued_tokens() == []
    assert token_request(emulator).status == 200


def test_recorded_requests_are_a_ring_of_the_most_recent(emulators: Any) -> None:
    emulator = emulators("imds", record_limit=5)

    for number in range(12):
        call(emulator, path=f"/probe/{number}")

    assert [request.path for request in emulator.requests] == [f"/probe/{number}" for number in range(7, 12)]
    assert emulator.requests_received == 12
    emulator.clear()
    assert (emulator.requests, emulator.requests_received) == ([], 0)


def test_recording_nothing_still_counts_and_serves(emulators: Any) -> None:
    emulator = emulators("imds", record_limit=0)

    assert token_request(emulator).status == 200

    assert (emulator.requests, emulator.requests_received, emulator.tokens_issued) == ([], 1, 1)


@pytest.mark.parametrize("limit", [-1, 1.5, True, "10"])
def test_record_limit_must_be_a_count_or_none(limit: Any) -> None:
    with pytest.raises(ValueError, match="record_limit"):
        Emulator("imds", record_limit=limit)


def test_a_large_recorded_body_is_cut_and_keeps_its_length(emulators: Any) -> None:
    emulator = emulators("cloud_shell")
    large = b"resource=" + b"x" * (1024 * 1024 - 9)  # the largest body the emulator reads: 1 MiB

    call(emulator, "POST", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=large)
    token_request(emulator)

    cut, whole = emulator.requests
    assert (len(cut.body), cut.body_length, cut.form) == (_wire.MAX_RECORDED_BODY, len(large), {})
    assert cut.body == large[: _wire.MAX_RECORDED_BODY]
    assert (whole.body_length, whole.form) == (None, {"resource": RESOURCE})


def test_memory_kept_for_many_large_bodies_is_bounded(emulators: Any) -> None:
    emulator = emulators("imds")
    body = b"x" * (1024 * 1024)

    for _ in range(150):  # 150 MiB received
        call(emulator, "POST", body=body)

    kept = emulator.requests
    assert len(kept) == 150 and emulator.requests_received == 150
    assert all(len(request.body) == _wire.MAX_RECORDED_BODY for request in kept)
    assert sum(len(request.body) for request in kept) <= _wire.MAX_RECORDED_BYTES


def test_recording_drops_the_oldest_beyond_its_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "MAX_RECORDED_BYTES", 200 * 1024)
    recording = _wire.Recording(None)  # no count limit: only the budget
    for number in range(10):
        recording.add(RecordedRequest("POST", f"/{number}", {}, {"h": "v" * 1000}, {}, b"x" * 60000, "http"))

    kept = recording.requests()
    assert [request.path for request in kept] == ["/7", "/8", "/9"]  # the newest that fit in 200 KiB
    assert recording.received == 10
    huge = RecordedRequest("GET", "/huge", {}, {"h": "v" * 300 * 1024}, {}, b"", "http")
    recording.add(huge)
    assert recording.requests() == [huge]  # the newest is always kept


def test_issued_tokens_keeps_the_most_recent_and_counts_them_all(emulators: Any) -> None:
    emulator = emulators("imds")
    minted = [emulator._mint(RESOURCE, emulator.system_identity, 0).token for _ in range(1005)]

    assert emulator.tokens_issued == 1005
    assert emulator.issued_tokens() == minted[5:]


def test_logs_carry_no_secret_or_token(emulators: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="msi_credential.emulator")
    emulator = emulators("app_service")

    token = token_request(emulator).json()["access_token"]

    messages = [record.getMessage() for record in caplog.records]
    assert any("/msi/token" in message and "200" in message for message in messages)
    assert not any(emulator.secret in message or token in message for message in messages)


# ---------------------------------------------------------------------------------------------- lifecycle


def test_stop_is_idempotent_and_closes_live_connections() -> None:
    emulator = Emulator("imds").start()
    parts = urlsplit(emulator.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 0, timeout=5)
    connection.request("GET", parts.path + "?api-version=2018-02-01&resource=x", headers={"Metadata": "true"})
    assert connection.getresponse().read()

    emulator.stop()
    emulator.stop()

    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", parts.path, headers={"Metadata": "true"})
        connection.getresponse()
    connection.close()


def test_context_manager_and_ipv6(emulators: Any) -> None:
    with Emulator("imds") as emulator:
        assert token_request(emulator).status == 200
    if not socket.has_ipv6:
        skip_or_fail_in_ci("this Python has no IPv6")
    try:
        v6 = emulators("imds", host="::1")
    except OSError:
        skip_or_fail_in_ci("::1 is not available on this host")
    assert v6.url.startswith("http://[::1]:")
    assert token_request(v6).status == 200


def test_unknown_source_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Emulator("nowhere")


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = Emulator("imds").url


# ---------------------------------------------------------------------------------------------- JWT helpers


def test_mint_and_decode_jwt() -> None:
    key = b"k" * 32
    token = mint_jwt({"aud": "a", "n": 1}, key)

    header, payload, signature = token.split(".")
    assert "=" not in token
    assert decode_jwt(token) == {"aud": "a", "n": 1}
    expected = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    assert signature == base64.urlsafe_b64encode(expected).rstrip(b"=").decode()
    assert json.loads(base64.urlsafe_b64decode(header + "==")) == {"alg": "HS256", "typ": "JWT"}


@pytest.mark.parametrize("token", ["", "a.b", "a.b.c.d", "x.bm90IGpzb24.y", "x.WzFd.y"])
def test_decode_jwt_rejects_non_tokens(token: str) -> None:
    with pytest.raises(ValueError):
        decode_jwt(token)


# ---------------------------------------------------------------------------------------------- workload identity

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def wi_form(emulator: Emulator, **changes: Optional[str]) -> dict[str, str]:
    """A client credentials form the workload identity emulator accepts, with ``changes`` (None drops a field)."""
    form = {
        "client_assertion": emulator.assertion,
        "client_assertion_type": ASSERTION_TYPE,
        "client_id": emulator.system_identity.client_id,
        "grant_type": "client_credentials",
        "scope": RESOURCE + "/.default",
    }
    for name, value in changes.items():
        if value is None:
            form.pop(name, None)
        else:
            form[name] = value
    return form


def wi_request(
    emulator: Emulator,
    form: Optional[Mapping[str, str]] = None,
    *,
    method: str = "POST",
    path: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Answer:
    body = urlencode(dict(form if form is not None else wi_form(emulator))).encode()
    return call(emulator, method, path=path, headers=headers or FORM_HEADERS, body=body)


def assert_entra_error(answer: Answer, status: int, error: str, number: Optional[int]) -> None:
    assert answer.status == status, answer.body
    body = answer.json()
    assert body["error"] == error
    assert body["error_codes"] == ([number] if number is not None else [])
    if number is not None:
        assert body["error_description"].startswith(f"AADSTS{number}: ")
    for name in ("trace_id", "correlation_id"):
        assert len(body[name]) == 36 and body[name].count("-") == 4
    assert f"Correlation ID: {body['correlation_id']}" in body["error_description"]
    assert body["timestamp"].endswith("Z")


def test_workload_identity_environ_and_federated_token_file(emulators: Any) -> None:
    emulator = emulators("workload_identity")
    environ = emulator.environ
    path = emulator.federated_token_file

    assert set(environ) == {
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_AUTHORITY_HOST",
    }
    assert environ["AZURE_FEDERATED_TOKEN_FILE"] == path
    assert environ["AZURE_TENANT_ID"] == TENANT
    assert environ["AZURE_CLIENT_ID"] == emulator.system_identity.client_id
    assert environ["AZURE_AUTHORITY_HOST"].startswith("http://127.0.0.1:")
    assert emulator.url == f"{environ['AZURE_AUTHORITY_HOST']}/{TENANT}/oauth2/v2.0/token"
    assert emulator.credential_kwargs == {}
    assert os.path.isabs(path) and os.path.basename(path) == "azure-identity-token"
    assert Path(path).read_text() == emulator.assertion
    claims = decode_jwt(emulator.assertion)  # it looks like a projected service account token
    assert claims["aud"] == ["api://AzureADTokenExchange"]
    assert claims["sub"].startswith("system:serviceaccount:")
    assert claims["exp"] > claims["iat"]


def test_workload_identity_issues_an_entra_token_for_the_scope(emulators: Any) -> None:
    emulator = emulators("workload_identity", token_lifetime=1800)

    answer = wi_request(emulator)

    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 1800
    claims = decode_jwt(body["access_token"])
    assert claims["aud"] == RESOURCE
    assert claims["appid"] == emulator.system_identity.client_id
    assert claims["oid"] == emulator.system_identity.object_id
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["ver"] == "1.0"
    assert emulator.issued_tokens() == [body["access_token"]]
    [request] = emulator.requests
    assert request.form == wi_form(emulator)


def test_workload_identity_accepts_a_configured_identity_and_any_tenant_spelling(emulators: Any) -> None:
    emulator = emulators("workload_identity", identities=[IDENTITY])

    answer = wi_request(
        emulator,
        wi_form(emulator, client_id=IDENTITY.client_id.upper(), scope="api://my-app/.default"),
        path=f"/{TENANT.upper()}/oauth2/v2.0/token",
    )

    assert answer.status == 200, answer.body
    claims = decode_jwt(answer.json()["access_token"])
    assert claims["appid"] == IDENTITY.client_id
    assert claims["oid"] == IDENTITY.object_id
    assert claims["aud"] == "api://my-app"


def test_workload_identity_unknown_client_id_is_unauthorized_client(emulators: Any) -> None:
    emulator = emulators("workload_identity")

    answer = wi_request(emulator, wi_form(emulator, client_id="33333333-3333-3333-3333-333333333333"))

    assert_entra_error(answer, 400, "unauthorized_client", 700016)
    assert "33333333-3333-3333-3333-333333333333" in answer.json()["error_description"]
    assert emulator.tokens_issued == 0


def test_workload_identity_rotation_refuses_the_old_assertion(emulators: Any) -> None:
    emulator = emulators("workload_identity")
    old = emulator.assertion

    new = emulator.rotate_assertion()

    assert new != old and new == emulator.assertion
    assert Path(emulator.federated_token_file).read_text() == new
    stale = wi_request(emulator, wi_form(emulator, client_assertion=old))
    assert_entra_error(stale, 400, "invalid_client", 700024)
    assert old not in stale.body.decode()
    assert wi_request(emulator, wi_form(emulator, client_assertion=new)).status == 200
    assert [name for name in os.listdir(os.path.dirname(emulator.federated_token_file))] == [
        "azure-identity-token"
    ]


def test_workload_identity_compares_with_what_the_file_holds(emulators: Any) -> None:
    emulator = emulators("workload_identity")
    path = Path(emulator.federated_token_file)

    unknown = wi_request(emulator, wi_form(emulator, client_assertion="eyJ.forged.assertion"))
    path.write_text("  my-own-assertion\n")
    own = wi_request(emulator, wi_form(emulator, client_assertion="my-own-assertion"))
    path.write_text("")
    emptied = wi_request(emulator, wi_form(emulator, client_assertion="my-own-assertion"))

    assert_entra_error(unknown, 400, "invalid_client", 70021)
    assert b"forged" not in unknown.body
    assert own.status == 200
    assert_entra_error(emptied, 400, "invalid_client", 70021)


@pytest.mark.parametrize(
    ("changes", "status", "error", "number"),
    [
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": None}, 400, "invalid_request", 900144),
        ({"client_id": None}, 400, "invalid_request", 900144),
        ({"scope": None}, 400, "invalid_request", 900144),
        ({"scope": RESOURCE}, 400, "invalid_scope", 1002012),
        ({"scope": "/.default"}, 400, "invalid_scope", 1002012),
        ({"scope": f"{RESOURCE}/.default https://vault.azure.net/.default"}, 400, "invalid_scope", 1002012),
        ({"client_assertion": None}, 401, "invalid_client", 7000218),
        ({"client_assertion": ""}, 401, "invalid_client", 7000218),
        ({"client_assertion_type": None}, 400, "invalid_request", 900144),
        (
            {"client_assertion_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"},
            400,
            "invalid_request",
            90100,
        ),
    ],
    ids=[
        "grant-type-wrong",
        "grant-type-missing",
        "client-id-missing",
        "scope-missing",
        "scope-without-default",
        "scope-empty-resource",
        "two-scopes",
        "assertion-missing",
        "assertion-empty",
        "assertion-type-missing",
        "assertion-type-wrong",
    ],
)
def test_workload_identity_checks_the_form(
    emulators: Any, changes: dict[str, Optional[str]], status: int, error: str, number: int
) -> None:
    emulator = emulators("workload_identity")

    answer = wi_request(emulator, wi_form(emulator, **changes))

    assert_entra_error(answer, status, error, number)
    assert emulator.assertion not in answer.body.decode()
    assert emulator.tokens_issued == 0


def test_workload_identity_checks_path_tenant_method_and_content_type(emulators: Any) -> None:
    emulator = emulators("workload_identity")
    form = wi_form(emulator)

    other_tenant = wi_request(emulator, form, path="/contoso.example/oauth2/v2.0/token")
    v1_path = wi_request(emulator, form, path=f"/{TENANT}/oauth2/token")
    get = call(emulator, "GET", query=form)
    json_body = call(
        emulator, "POST", headers={"Content-Type": "application/json"}, body=json.dumps(form).encode()
    )

    assert_entra_error(other_tenant, 400, "invalid_request", 90002)
    assert "contoso.example" in other_tenant.json()["error_description"]
    assert v1_path.status == 404
    assert_entra_error(get, 400, "invalid_request", 900561)
    assert_entra_error(json_body, 400, "invalid_request", 900144)
    assert emulator.tokens_issued == 0


def test_workload_identity_scripted_fault_has_the_entra_shape(emulators: Any) -> None:
    emulator = emulators("workload_identity")
    emulator.script(Fault(503), Fault(404))

    transient = wi_request(emulator)
    plain = wi_request(emulator)

    assert_entra_error(transient, 503, "temporarily_unavailable", 90033)
    assert_entra_error(plain, 404, "not_found", None)
    assert wi_request(emulator).status == 200


def test_workload_identity_assertion_is_in_no_repr_or_log(
    emulators: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="msi_credential.emulator")
    emulator = emulators("workload_identity")
    assertion = emulator.assertion

    wi_request(emulator)
    wi_request(emulator, wi_form(emulator, client_id="nobody"))

    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(emulator), str(emulator)]
    texts += [repr(request) for request in emulator.requests] + [
        str(request) for request in emulator.requests
    ]
    assert any("/oauth2/v2.0/token" in text and "200" in text for text in texts)
    assert not any(assertion in text for text in texts)


def test_workload_identity_file_lifecycle(tmp_path: Path) -> None:
    emulator = Emulator("workload_identity")
    with pytest.raises(RuntimeError):
        _ = emulator.federated_token_file
    with pytest.raises(RuntimeError):
        emulator.rotate_assertion()
    with pytest.raises(RuntimeError):
        _ = Emulator("imds").federated_token_file

    with emulator:
        first = emulator.federated_token_file
        assert Path(first).is_file()
    assert not Path(first).exists()
    assert not Path(first).parent.exists()

    with emulator:  # a restart writes a fresh file
        second = emulator.federated_token_file
        assert Path(second).is_file()
        assert wi_request(emulator).status == 200
    assert not Path(second).exists()


# ---------------------------------------------------------------------------------------------- random failures


def test_fail_randomly_at_rate_one_fails_every_token_request_and_zero_turns_it_off(emulators: Any) -> None:
    emulator = emulators("imds")

    emulator.fail_randomly(1.0, statuses=(503,))
    failed = [token_request(emulator) for _ in range(3)]
    emulator.fail_randomly(0)
    recovered = token_request(emulator)

    assert [answer.status for answer in failed] == [503, 503, 503]
    assert set(failed[0].json()) == {"error", "error_description"}  # the source's error shape
    assert recovered.status == 200
    assert emulator.random_failures == 3
    assert emulator.tokens_issued == 1


def test_fail_randomly_429_carries_retry_after_zero(emulators: Any) -> None:
    emulator = emulators("app_service")
    emulator.fail_randomly(1, statuses=[429])

    answer = token_request(emulator)

    assert answer.status == 429
    assert answer.headers["retry-after"] == "0"
    assert set(answer.json()) == {"statusCode", "message", "correlationId"}


def test_fail_randomly_draws_statuses_and_is_repeatable_with_a_seed(emulators: Any) -> None:
    first = emulators("imds")
    second = emulators("imds")
    first.fail_randomly(0.5, seed=1234)
    second.fail_randomly(0.5, seed=1234)

    one = [token_request(first).status for _ in range(40)]
    two = [token_request(second).status for _ in range(40)]

    assert one == two
    assert set(one) == {200, 500, 429}
    assert first.random_failures == sum(status != 200 for status in one)
    assert first.tokens_issued == one.count(200)


def test_fail_randomly_leaves_scripted_faults_and_other_paths_alone(emulators: Any) -> None:
    emulator = emulators("imds")
    emulator.fail_randomly(1.0, statuses=(500,))
    emulator.script(Fault(200), Fault(404, "scripted"))

    scripted_ok = token_request(emulator)
    scripted_404 = token_request(emulator)
    elsewhere = call(emulator, path="/metadata/instance", headers={"Metadata": "true"})

    assert scripted_ok.status == 200
    assert (scripted_404.status, scripted_404.body) == (404, b"scripted")
    assert elsewhere.status == 404 and elsewhere.json()["error"] == "not_found"
    assert emulator.random_failures == 0


def test_fail_randomly_applies_to_workload_identity(emulators: Any) -> None:
    emulator = emulators("workload_identity")
    emulator.fail_randomly(1.0, statuses=(500,))

    answer = wi_request(emulator)

    assert_entra_error(answer, 500, "temporarily_unavailable", 90033)
    assert emulator.random_failures == 1


def test_clear_resets_the_random_failure_count_but_not_the_rate(emulators: Any) -> None:
    emulator = emulators("imds")
    emulator.fail_randomly(1.0)
    token_request(emulator)

    emulator.clear()
    assert emulator.random_failures == 0
    assert token_request(emulator).status in (500, 429)
    assert emulator.random_failures == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-0.1,), ValueError),
        ((1.5,), ValueError),
        ((float("nan"),), ValueError),
        (("0.5",), TypeError),
        ((True,), TypeError),
        ((0.5, ()), ValueError),
        ((0.5, (200,)), ValueError),
        ((0.5, (600,)), ValueError),
        ((0.5, (True,)), ValueError),
        ((0.5, ("500",)), ValueError),
        ((0.5, (500,), "seed"), TypeError),
    ],
)
def test_fail_randomly_checks_its_arguments(emulators: Any, args: tuple[Any, ...], error: type) -> None:
    emulator = emulators("imds")
    emulator.fail_randomly(1.0, statuses=(503,))

    with pytest.raises(error):
        emulator.fail_randomly(*args)

    assert token_request(emulator).status == 503  # the previous setting stands


def test_fail_randomly_is_thread_safe(emulators: Any) -> None:
    import concurrent.futures

    emulator = emulators("imds")
    emulator.fail_randomly(0.5, statuses=(500, 503, 429), seed=7)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: token_request(emulator).status, range(160)))

    failures = sum(status != 200 for status in statuses)
    assert set(statuses) <= {200, 500, 503, 429}
    assert 0 < failures < 160
    assert emulator.random_failures == failures
    assert emulator.tokens_issued == statuses.count(200)
    assert len(emulator.requests) == 160
