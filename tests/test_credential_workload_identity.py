"""Workload identity through the public credential, both faces, against the emulator playing Microsoft Entra."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential.emulator import Emulator, Fault, UserAssignedIdentity, decode_jwt

STORAGE = "https://storage.azure.com/.default"
VAULT = "https://vault.azure.net/.default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SECRET_HEADERS = ("authorization", "x-identity-header", "secret", "metadata")
IDENTITY = UserAssignedIdentity(
    client_id="11111111-aaaa-1111-1111-111111111111",
    object_id="22222222-bbbb-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
)
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workload identity honours proxy variables: keep the machine's own out of these tests."""
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def emulator(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("workload_identity", identities=[IDENTITY])
    return started


def environ_with(emulator: Emulator, **changes: Optional[str]) -> dict[str, str]:
    """The emulator's variables with ``changes`` (None removes one)."""
    environ = dict(emulator.environ)
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def assert_failed(error: ManagedIdentityError, code: str) -> None:
    assert error.error_code == code, error
    assert not isinstance(error, CredentialUnavailableError)
    assert error.source is ManagedIdentitySource.WORKLOAD_IDENTITY


def entra_body(error: str, number: int, text: str, correlation_id: str = "corr-5f1c") -> dict[str, Any]:
    return {
        "error": error,
        "error_description": f"AADSTS{number}: {text} Trace ID: trace-9a Correlation ID: {correlation_id}",
        "error_codes": [number],
        "timestamp": "2025-01-01 00:00:00Z",
        "trace_id": "trace-9a",
        "correlation_id": correlation_id,
    }


def sleeper(face: Any, also: Callable[[], None]) -> Any:
    """A sleeper of the face's kind that records the delay and then runs ``also``."""
    if face.is_async:

        async def sleep(seconds: float) -> None:
            face.sleeps.append(seconds)
            also()

        return sleep

    def sleep_sync(seconds: float) -> None:
        face.sleeps.append(seconds)
        also()

    return sleep_sync


# ---------------------------------------------------------------------------------------------- the exchange


def test_token_from_the_federated_assertion_with_the_exact_request(face: Any, emulator: Emulator) -> None:
    credential = face.credential(emulator)
    assert credential.source is ManagedIdentitySource.WORKLOAD_IDENTITY
    before = int(time.time())

    token = credential.get_token(STORAGE)

    claims = decode_jwt(token.token)
    assert claims["aud"] == "https://storage.azure.com"
    assert claims["appid"] == emulator.system_identity.client_id
    assert before + 3600 - 1 <= token.expires_on <= int(time.time()) + 3600
    [request] = emulator.requests
    assert request.method == "POST"
    assert request.path == f"/{TENANT}/oauth2/v2.0/token"
    assert request.scheme == "http"
    assert request.query == {}
    assert request.headers["content-type"].split(";")[0] == "application/x-www-form-urlencoded"
    assert request.form == {
        "client_assertion": Path(emulator.federated_token_file).read_text().strip(),
        "client_assertion_type": ASSERTION_TYPE,
        "client_id": emulator.system_identity.client_id,
        "grant_type": "client_credentials",
        "scope": "https://storage.azure.com/.default",
    }
    assert not set(SECRET_HEADERS) & set(request.headers)
    assert credential.get_token(STORAGE).token == token.token  # cached: the file is read per request only
    assert len(emulator.requests) == 1


def test_token_info_has_a_refresh_time_and_tenant_id_changes_nothing(face: Any, emulator: Emulator) -> None:
    credential = face.credential(emulator)

    info = credential.get_token_info("https://management.azure.com", options={"tenant_id": "other"})

    assert decode_jwt(info.token)["aud"] == "https://management.azure.com"
    assert info.refresh_on is not None
    assert info.expires_on - info.refresh_on == 300  # a 1 h token refreshes 5 min before expiry
    [request] = emulator.requests
    assert request.path == f"/{TENANT}/oauth2/v2.0/token"
    assert request.form["scope"] == "https://management.azure.com/.default"


@pytest.mark.parametrize(
    "kwargs",
    [{"client_id": IDENTITY.client_id}, {"identity_config": {"client_id": IDENTITY.client_id}}],
    ids=["keyword", "identity_config"],
)
def test_client_id_argument_overrides_azure_client_id(
    face: Any, emulator: Emulator, kwargs: dict[str, Any]
) -> None:
    credential = face.credential(emulator, **kwargs)

    token = credential.get_token(STORAGE)

    assert emulator.requests[0].form["client_id"] == IDENTITY.client_id
    claims = decode_jwt(token.token)
    assert claims["appid"] == IDENTITY.client_id
    assert claims["oid"] == IDENTITY.object_id


def test_client_id_argument_alone_is_enough(face: Any, emulator: Emulator) -> None:
    credential = face.credential(
        emulator, _environ=environ_with(emulator, AZURE_CLIENT_ID=None), client_id=IDENTITY.client_id
    )

    assert decode_jwt(credential.get_token(STORAGE).token)["appid"] == IDENTITY.client_id


@pytest.mark.parametrize("blank", [None, "", "   "], ids=["unset", "empty", "whitespace"])
def test_missing_client_id_fails_at_first_get_token_before_any_request(
    face: Any, emulator: Emulator, blank: Optional[str]
) -> None:
    credential = face.credential(emulator, _environ=environ_with(emulator, AZURE_CLIENT_ID=blank))
    assert credential.source is ManagedIdentitySource.WORKLOAD_IDENTITY  # construction does not fail

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, "missing_client_id")
    assert "AZURE_CLIENT_ID" in str(caught.value) and "client_id" in str(caught.value)
    assert emulator.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"identity_config": {"object_id": IDENTITY.object_id}},
        {"identity_config": {"msi_res_id": IDENTITY.resource_id}},
    ],
    ids=["config-object_id", "config-msi_res_id"],
)
def test_object_id_and_resource_id_in_identity_config_are_refused_before_any_request(
    face: Any, emulator: Emulator, kwargs: dict[str, Any]
) -> None:
    credential = face.credential(emulator, **kwargs)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    # The keywords: test_credential_sources.py::test_source_refuses_a_selector_it_does_not_take_before_any_request
    assert_failed(caught.value, "user_assigned_not_supported")
    assert emulator.requests == []


def test_extra_identity_config_keys_join_the_form_without_overriding(face: Any, emulator: Emulator) -> None:
    credential = face.credential(
        emulator,
        identity_config={"slice": "testslice", "scope": "https://evil/.default", "claims": '{"x":1}'},
    )

    credential.get_token(STORAGE)

    form = emulator.requests[0].form
    assert form["slice"] == "testslice"
    assert form["scope"] == STORAGE
    assert "claims" not in form


# ---------------------------------------------------------------------------------------------- Entra errors


def test_unknown_client_is_a_typed_error_with_the_correlation_id(face: Any, emulator: Emulator) -> None:
    credential = face.credential(emulator, client_id="33333333-3333-3333-3333-333333333333")

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    error = caught.value
    assert_failed(error, "unauthorized_client")
    assert error.status_code == 400
    assert error.correlation_id is not None and len(error.correlation_id) == 36
    assert error.correlation_id in str(error)
    assert "AADSTS700016" in str(error)
    assert len(emulator.requests) == 1  # a 400 is not retried
    assert face.sleeps == []


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (
            400,
            entra_body("invalid_scope", 1002012, "The provided value for scope x is not valid."),
            "invalid_scope",
        ),
        (401, entra_body("invalid_client", 7000215, "Invalid client secret provided."), "invalid_client"),
        (400, entra_body("invalid_request", 90002, "Tenant 'x' not found."), "invalid_request"),
        (403, entra_body("access_denied", 7000112, "Application is disabled."), "access_denied"),
        (400, entra_body("unauthorized_client", 700016, "Application not found."), "unauthorized_client"),
        (404, b"<html>not here</html>", "http_404"),
    ],
    ids=[
        "invalid_scope",
        "invalid_client",
        "invalid_request",
        "access_denied",
        "unauthorized_client",
        "html-404",
    ],
)
def test_entra_errors_are_failed_with_code_and_correlation_id(
    face: Any, emulator: Emulator, status: int, body: Any, code: str
) -> None:
    emulator.script(Fault(status, body))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, code)
    assert caught.value.status_code == status
    if isinstance(body, dict):
        assert caught.value.correlation_id == "corr-5f1c"
        assert "corr-5f1c" in str(caught.value)
    assert len(emulator.requests) == 1
    assert face.sleeps == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 501, 505])
def test_other_statuses_are_not_retried(face: Any, emulator: Emulator, status: int) -> None:
    emulator.script(Fault(status))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.status_code == status
    assert len(emulator.requests) == 1
    assert face.sleeps == []


# ---------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried(face: Any, emulator: Emulator, status: int) -> None:
    emulator.script(Fault(status))
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token

    assert face.sleeps == [1.0]
    assert len(emulator.requests) == 2
    assert {request.form["client_assertion"] for request in emulator.requests} == {emulator.assertion}


def test_retries_stop_after_three_with_the_last_error(face: Any, emulator: Emulator) -> None:
    emulator.script(Fault(503), Fault(503), Fault(503), Fault(503))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, "temporarily_unavailable")
    assert caught.value.status_code == 503
    assert caught.value.correlation_id
    assert face.sleeps == [1.0, 2.0, 4.0]
    assert len(emulator.requests) == 4


def test_retry_total_zero_is_one_attempt(face: Any, emulator: Emulator) -> None:
    emulator.script(Fault(500))
    credential = face.credential(emulator, retry_total=0)

    with pytest.raises(ManagedIdentityError):
        credential.get_token(STORAGE)

    assert len(emulator.requests) == 1
    assert face.sleeps == []


def test_dropped_connection_is_retried(face: Any, emulator: Emulator) -> None:
    emulator.script(Fault(reset=True))
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token

    assert face.sleeps == [1.0]
    assert len(emulator.requests) == 2


def test_unreachable_authority_is_failed_after_retries(
    face: Any, emulator: Emulator, unused_port: int
) -> None:
    credential = face.credential(
        emulator, _environ=environ_with(emulator, AZURE_AUTHORITY_HOST=f"http://127.0.0.1:{unused_port}")
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, "endpoint_unreachable")
    assert "AZURE_AUTHORITY_HOST" in str(caught.value)
    assert face.sleeps == [1.0, 2.0, 4.0]


def test_bare_authority_host_gets_https(face: Any, emulator: Emulator) -> None:
    bare = emulator.environ["AZURE_AUTHORITY_HOST"].removeprefix("http://")
    credential = face.credential(
        emulator, _environ=environ_with(emulator, AZURE_AUTHORITY_HOST=bare), retry_total=0
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)  # TLS to the plain-HTTP emulator: no answer

    assert_failed(caught.value, "endpoint_unreachable")
    assert f"https://{bare}/{TENANT}/oauth2/v2.0/token" in str(caught.value)
    assert emulator.tokens_issued == 0


# ---------------------------------------------------------------------------------------------- the file


def test_rotated_assertion_is_sent_on_the_next_request(face: Any, emulator: Emulator) -> None:
    credential = face.credential(emulator)
    credential.get_token(STORAGE)
    first = emulator.assertion

    second = emulator.rotate_assertion()
    cached = credential.get_token(STORAGE)
    challenged = credential.get_token(
        STORAGE, claims='{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    )
    third = emulator.rotate_assertion()
    credential.get_token(VAULT)

    sent = [request.form["client_assertion"] for request in emulator.requests]
    assert sent == [first, second, third]
    assert len({first, second, third}) == 3
    assert cached.token != challenged.token
    assert emulator.requests[1].form["claims"] == '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    assert "claims" not in emulator.requests[2].form


def test_assertion_rotated_during_a_retry_is_read_again(face: Any, emulator: Emulator) -> None:
    emulator.script(Fault(503))
    rotated: list[str] = []
    credential = face.credential(
        emulator, _sleep=sleeper(face, lambda: rotated.append(emulator.rotate_assertion()))
    )

    assert credential.get_token(STORAGE).token

    first, second = (request.form["client_assertion"] for request in emulator.requests)
    assert second == rotated[0] == emulator.assertion
    assert first != second


def test_a_stale_assertion_is_refused_by_entra(face: Any, emulator: Emulator, tmp_path: Path) -> None:
    stale = tmp_path / "token"
    stale.write_text(emulator.assertion)
    emulator.rotate_assertion()
    credential = face.credential(
        emulator, _environ=environ_with(emulator, AZURE_FEDERATED_TOKEN_FILE=str(stale))
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, "invalid_client")
    assert "AADSTS700024" in str(caught.value)
    assert caught.value.correlation_id


@pytest.mark.parametrize(
    "content", ["", "  \n\t ", None, "directory"], ids=["empty", "blank", "missing", "dir"]
)
def test_unreadable_or_empty_token_file_fails_before_any_request(
    face: Any, emulator: Emulator, tmp_path: Path, content: Optional[str]
) -> None:
    path = tmp_path / "token"
    if content == "directory":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    credential = face.credential(
        emulator, _environ=environ_with(emulator, AZURE_FEDERATED_TOKEN_FILE=str(path))
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, "federated_token_file_unreadable")
    assert "AZURE_FEDERATED_TOKEN_FILE" in str(caught.value)
    assert emulator.requests == []
    assert face.sleeps == []


def test_token_file_removed_after_a_first_token(face: Any, emulator: Emulator) -> None:
    credential = face.credential(emulator)
    credential.get_token(STORAGE)
    Path(emulator.federated_token_file).unlink()

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert_failed(caught.value, "federated_token_file_unreadable")
    assert len(emulator.requests) == 1
    assert credential.get_token(STORAGE).token  # the cached token is unaffected


# ---------------------------------------------------------------------------------------------- configuration


AUTHORITIES_REFUSED = [
    "http://login.microsoftonline.com",
    "http://10.0.0.1:8080",
    "http://169.254.169.254",
    "http://127.0.0.1.evil.example",
    "http://127.0.0.1@evil.example",
    "ftp://login.microsoftonline.com",
    "https://login.microsoftonline.com?x=1",
]
TENANTS_REFUSED = ["bad/tenant", "t?x=1", "t@x", "t%2f", "..", "tenant id"]


@pytest.mark.parametrize(
    ("variable", "value", "code"),
    [
        *(("AZURE_AUTHORITY_HOST", authority, "invalid_endpoint") for authority in AUTHORITIES_REFUSED),
        *(("AZURE_TENANT_ID", tenant, "invalid_tenant_id") for tenant in TENANTS_REFUSED),
    ],
    ids=[
        *(f"authority-{value}" for value in AUTHORITIES_REFUSED),
        *(f"tenant-{value}" for value in TENANTS_REFUSED),
    ],
)
def test_authority_not_https_or_loopback_or_bad_tenant_fails_naming_the_variable_before_any_socket(
    face: Any, emulator: Emulator, socket_guard: list[str], variable: str, value: str, code: str
) -> None:
    credential = face.credential(emulator, _environ=environ_with(emulator, **{variable: value}))
    assert credential.source is ManagedIdentitySource.WORKLOAD_IDENTITY

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, code)
    assert variable in str(caught.value)
    assert emulator.requests == []
    assert socket_guard == []


def test_tenant_domain_name_is_accepted_in_the_path(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity", tenant_id="contoso.onmicrosoft.com")
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token
    assert emulator.requests[0].path == "/contoso.onmicrosoft.com/oauth2/v2.0/token"


def test_other_sources_win_over_workload_identity(
    face: Any, emulator: Emulator, emulator_factory: Any
) -> None:
    cloud_shell = emulator_factory("cloud_shell")
    credential = face.credential(emulator, _environ={**emulator.environ, **cloud_shell.environ})

    assert credential.source is ManagedIdentitySource.CLOUD_SHELL
    credential.get_token(STORAGE)
    assert emulator.requests == [] and len(cloud_shell.requests) == 1


# ---------------------------------------------------------------------------------------------- capabilities


def test_client_capabilities_become_the_claims_field(face: Any, emulator: Emulator) -> None:
    credential = face.credential(emulator, client_capabilities=["cp1", "cp2"])

    credential.get_token(STORAGE)
    credential.get_token(VAULT, claims='{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}')

    plain, challenged = (json.loads(request.form["claims"]) for request in emulator.requests)
    assert plain == {"access_token": {"xms_cc": {"values": ["cp1", "cp2"]}}}
    assert challenged == {
        "access_token": {
            "nbf": {"essential": True, "value": "1700000000"},
            "xms_cc": {"values": ["cp1", "cp2"]},
        }
    }
    for request in emulator.requests:
        assert "xms_cc" not in request.form and "xms_cc" not in request.query


# ---------------------------------------------------------------------------------------------- secrets


def test_assertion_never_in_logs_errors_or_reprs(
    face: Any, emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assertion = emulator.assertion
    echo = entra_body(
        "invalid_client", 700024, f"Client assertion {assertion} is not within its valid time range."
    )
    emulator.script(Fault(503, {**echo, "error": f"bad_{assertion}"}), Fault(400, echo))
    credential = face.credential(emulator, logging_enable=True)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)
    token = credential.get_token(STORAGE).token
    with pytest.raises(ManagedIdentityError) as unknown:
        face.credential(emulator, client_id="nobody", logging_enable=True).get_token(STORAGE)

    assert caught.value.error_code == "invalid_client"
    assert "***" in str(caught.value)
    assert any("oauth2/v2.0/token" in record.getMessage() for record in caplog.records)  # logging was on
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    for error in (caught.value, unknown.value):
        texts += [str(error), repr(error), error.message]
    texts += [repr(credential.inner), str(credential.inner)]
    for text in texts:
        assert assertion not in text
        assert token not in text


# ---------------------------------------------------------------------------------------------- proxies


@pytest.fixture
def proxy_emulator(emulator: Emulator) -> Iterator[tuple[Emulator, str]]:
    """The emulator doubles as an HTTP proxy (it reads absolute-form targets); the authority is unreachable."""
    yield emulator, emulator.environ["AZURE_AUTHORITY_HOST"]


def test_proxy_variables_apply_to_workload_identity(
    face: Any, proxy_emulator: tuple[Emulator, str], monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    emulator, proxy = proxy_emulator
    monkeypatch.setenv("HTTP_PROXY", proxy)
    authority = f"http://127.0.0.1:{unused_port}"
    credential = face.credential(emulator, _environ=environ_with(emulator, AZURE_AUTHORITY_HOST=authority))

    assert credential.get_token(STORAGE).token

    [request] = emulator.requests
    assert request.headers["host"] == f"127.0.0.1:{unused_port}"


def test_proxies_keyword_applies_to_workload_identity(
    face: Any, proxy_emulator: tuple[Emulator, str], unused_port: int
) -> None:
    emulator, proxy = proxy_emulator
    authority = f"http://127.0.0.1:{unused_port}"
    credential = face.credential(
        emulator,
        _environ=environ_with(emulator, AZURE_AUTHORITY_HOST=authority),
        proxies={"http": proxy},
        retry_total=0,
    )

    assert credential.get_token(STORAGE).token
    assert emulator.requests[0].headers["host"] == f"127.0.0.1:{unused_port}"
