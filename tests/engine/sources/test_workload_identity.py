"""Workload identity (``_engine/sources/workload_identity.py``), also through the AKS token proxy: the client id and
the claims in the form its spec builds; its rules and the token proxy's CA through the scripted driver
(tests/engine/scripted.py, no sockets); then through the public credential on both faces, against the emulator playing
Microsoft Entra and, over real TLS (its own CA, a server name that is not its address), the token proxy. Its request,
with every source's: test_spec.py."""

from __future__ import annotations

import json
import logging
import os
import pickle
import time
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import trustme

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.effects import KeyFileResult, ReadAssertion, ReadProxyCA
from msi_credential._engine.flow import Engine
from msi_credential._engine.identity import Identity
from msi_credential._engine.sources import workload_identity
from msi_credential._setup import build_engine
from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import TOKEN_PROXY_SERVER_NAME, Emulator, Fault, UserAssignedIdentity, decode_jwt

from ...faces.support import STORAGE
from ..scripted import (
    Clock,
    Response,
    Script,
    Send,
    TransportFailure,
    check_error,
    engine,
    error_response,
    token_response,
)
from ..test_detection import _workload, run
from .support import (
    RESOURCE,
    TOKEN_FILE,
    WORKLOAD,
    assertion,
    build,
    changed,
    failure,
    user,
    wi_parts,
)

# ----------------------------------------------------------------------------------------- the request


def test_workload_identity_client_id_argument_beats_azure_client_id() -> None:
    request = build(S.WORKLOAD_IDENTITY, user("client_id", "arg-client"), parts=wi_parts())
    assert (request.form or {})["client_id"] == "arg-client"


def test_workload_identity_passes_claims_alone() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts(claims=claims))
    assert (request.form or {})["claims"] == claims


def test_workload_identity_capabilities_become_claims() -> None:
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts(capabilities=("cp1",)))
    assert json.loads((request.form or {})["claims"]) == {"access_token": {"xms_cc": {"values": ["cp1"]}}}


def test_workload_identity_merges_claims_with_xms_cc() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}},"id_token":{"x":1}}'
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts(claims=claims, capabilities=("cp1", "cp2")))
    assert json.loads((request.form or {})["claims"]) == {
        "access_token": {"nbf": {"essential": True, "value": "1"}, "xms_cc": {"values": ["cp1", "cp2"]}},
        "id_token": {"x": 1},
    }


def test_workload_identity_without_claims_or_capabilities_sends_no_claims() -> None:
    assert "claims" not in (build(S.WORKLOAD_IDENTITY, parts=wi_parts(claims="")).form or {})


# ------------------------------------------------------------------------ the engine's rules, scripted


def test_workload_identity_reads_the_token_file_for_every_attempt_and_posts_each_read() -> None:
    clock = Clock()
    credential_engine = engine(WORKLOAD, clock)
    script = Script(clock).queue(
        assertion("assertion-one"), error_response(503), assertion("assertion-two"), token_response("wi")
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "wi"

    assert script.reads == [TOKEN_FILE, TOKEN_FILE]
    forms = [dict(request.form or {}) for request in script.sent]
    assert [form["client_assertion"] for form in forms] == ["assertion-one", "assertion-two"]
    assert all(form["client_id"] == "client-a" for form in forms)
    assert all(form["scope"] == RESOURCE + "/.default" for form in forms)
    assert all("claims" not in form for form in forms)
    assert script.sleeps == [1.0]


def test_an_unreadable_federated_token_file_is_its_error_and_nothing_is_sent() -> None:
    clock = Clock()
    why = "AZURE_FEDERATED_TOKEN_FILE cannot be read: permission denied"
    script = Script(clock).queue(KeyFileResult(error=("federated_token_file_unreadable", why)))

    error = failure(script, engine(WORKLOAD, clock).acquire(RESOURCE))

    check_error(error, "federated_token_file_unreadable", ManagedIdentitySource.WORKLOAD_IDENTITY)
    assert str(error).startswith(why)
    assert script.sent == []


def test_workload_identity_without_a_client_id_is_refused_before_reading_the_token_file() -> None:
    clock = Clock()
    environ = {key: value for key, value in WORKLOAD.items() if key != "AZURE_CLIENT_ID"}
    script = Script(clock)

    error = failure(script, engine(environ, clock).acquire(RESOURCE))

    check_error(error, "missing_client_id", ManagedIdentitySource.WORKLOAD_IDENTITY)
    assert "AZURE_CLIENT_ID" in str(error) and "client_id=" in str(error)
    assert script.reads == [] and script.sent == []


def test_workload_identity_takes_the_client_id_argument_without_azure_client_id() -> None:
    clock = Clock()
    environ = {key: value for key, value in WORKLOAD.items() if key != "AZURE_CLIENT_ID"}
    script = Script(clock).queue(assertion(), token_response("wi"))

    assert script.run(engine(environ, clock, client_id="client-b").acquire(RESOURCE)).token == "wi"
    assert dict(script.sent[0].form or {})["client_id"] == "client-b"


def test_an_assertion_echoed_by_the_token_endpoint_is_scrubbed_from_the_error() -> None:
    clock = Clock()
    secret = "federated-assertion-value"
    body = json.dumps({"error": "invalid_client", "error_description": f"bad assertion {secret}"}).encode()
    script = Script(clock).queue(assertion(secret), Response(400, {"content-type": "application/json"}, body))

    error = failure(script, engine(WORKLOAD, clock).acquire(RESOURCE))

    assert error.status_code == 400
    assert "bad assertion" in str(error) and secret not in str(error)


def test_workload_identity_credentials_with_different_client_ids_keep_separate_tokens() -> None:
    clock = Clock()
    script = Script(clock).queue(assertion(), token_response("for-a"), assertion(), token_response("for-b"))
    first = engine(WORKLOAD, clock, share_cache=True)
    other = engine(dict(WORKLOAD, AZURE_CLIENT_ID="client-b"), clock, share_cache=True)
    same = engine(dict(WORKLOAD, AZURE_CLIENT_ID="CLIENT-A"), clock, share_cache=True)

    assert script.run(first.acquire(RESOURCE)).token == "for-a"
    assert script.run(other.acquire(RESOURCE)).token == "for-b"
    assert script.run(same.acquire(RESOURCE)).token == "for-a"  # ids compare case-insensitively
    assert len(script.sent) == 2


def test_workload_identity_sends_the_claims_challenge_as_given() -> None:
    clock = Clock()
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1700000000"}}}'
    script = Script(clock).queue(assertion(), token_response("wi"))

    script.run(engine(WORKLOAD, clock).acquire(RESOURCE, claims=claims))

    assert dict(script.sent[0].form or {})["claims"] == claims


def test_workload_identity_sends_client_capabilities_as_compact_claims() -> None:
    clock = Clock()
    script = Script(clock).queue(assertion(), token_response("wi"))

    script.run(engine(WORKLOAD, clock, client_capabilities=["cp1"]).acquire(RESOURCE))

    assert dict(script.sent[0].form or {})["claims"] == '{"access_token":{"xms_cc":{"values":["cp1"]}}}'


def test_workload_identity_config_keys_join_the_form_without_overriding_it_or_adding_claims() -> None:
    clock = Clock()
    credential_engine = build_engine(
        client_id=None,
        object_id=None,
        resource_id=None,
        identity_config={"slice": "testslice", "scope": "https://other/.default", "claims": "{}"},
        client_capabilities=None,
        share_cache=False,
        kwargs={"_environ": dict(WORKLOAD), "_clock": clock},
    )
    script = Script(clock).queue(assertion(), token_response("wi"))

    script.run(credential_engine.acquire(RESOURCE))

    form = dict(script.sent[0].form or {})
    assert form["slice"] == "testslice"
    assert form["scope"] == RESOURCE + "/.default"
    assert "claims" not in form


# the AKS token proxy: the CA each request carries


OTHER_RESOURCE = "https://vault.azure.net"
CA_FILE = "/var/run/secrets/aks/ca.crt"
PROXY = dict(WORKLOAD, AZURE_KUBERNETES_TOKEN_PROXY="https://127.0.0.1:9", AZURE_KUBERNETES_CA_FILE=CA_FILE)


@cache
def ca_pem(number: int) -> str:
    """A fresh trustme CA's certificate as PEM, a different one per number (0: a CA that signed nothing the token
    proxy's emulator holds)."""
    return trustme.CA().cert_pem.bytes().decode("ascii")


def ca(number: int = 1) -> KeyFileResult:
    return KeyFileResult(content=ca_pem(number))


def proxy_engine(clock: Clock, environ: Optional[dict[str, str]] = None, **kwargs: Any) -> Engine:
    return engine(PROXY if environ is None else environ, clock, enable_azure_proxy=True, **kwargs)


def test_the_token_proxy_request_carries_the_ca_files_content_and_goes_direct() -> None:
    clock = Clock()
    environ = dict(PROXY, AZURE_KUBERNETES_SNI_NAME="proxy.example")
    script = Script(clock).queue(assertion(), ca(1), token_response("via-proxy"))

    assert script.run(proxy_engine(clock, environ).acquire(RESOURCE)).token == "via-proxy"

    assert [type(effect) for effect in script.effects] == [ReadAssertion, ReadProxyCA, Send]
    assert script.reads == [TOKEN_FILE, CA_FILE]
    [request] = script.sent
    assert request.tls_ca == ca_pem(1) and request.token_proxy is True and request.use_proxies is False
    assert request.tls_server_name == "proxy.example"
    assert request.url.startswith("https://127.0.0.1:9/")


def test_without_a_server_name_the_token_proxy_request_names_none() -> None:
    clock = Clock()
    script = Script(clock).queue(assertion(), ca(1), token_response("t"))

    script.run(proxy_engine(clock).acquire(RESOURCE))

    assert script.sent[0].tls_server_name is None


def test_the_ca_data_variable_is_carried_as_is_without_reading_a_file() -> None:
    clock = Clock()
    environ = {key: value for key, value in PROXY.items() if key != "AZURE_KUBERNETES_CA_FILE"}
    environ["AZURE_KUBERNETES_CA_DATA"] = ca_pem(2)
    script = Script(clock).queue(assertion(), token_response("t"))

    script.run(proxy_engine(clock, environ).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE]
    assert script.sent[0].tls_ca == ca_pem(2).strip() and script.sent[0].token_proxy is True


def test_without_a_ca_variable_the_token_proxy_is_checked_against_the_system_cas() -> None:
    clock = Clock()
    environ = {key: value for key, value in PROXY.items() if key != "AZURE_KUBERNETES_CA_FILE"}
    script = Script(clock).queue(assertion(), token_response("t"))

    script.run(proxy_engine(clock, environ).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE]
    assert script.sent[0].tls_ca is None and script.sent[0].token_proxy is True


def test_without_the_token_proxy_the_request_is_an_ordinary_one() -> None:
    clock = Clock()
    script = Script(clock).queue(assertion(), token_response("t"))

    # enable_azure_proxy not given: the variables are ignored
    script.run(engine(PROXY, clock).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE]
    request = script.sent[0]
    assert request.token_proxy is False and request.tls_ca is None and request.use_proxies is True


@pytest.mark.parametrize(
    ("second", "logged"),
    [
        pytest.param(
            2,
            ["Microsoft Entra token endpoint: AZURE_KUBERNETES_CA_FILE changed; using the new CA"],
            id="rotated",
        ),
        pytest.param(1, [], id="same"),  # carried again without a change logged
    ],
)
def test_the_ca_file_is_read_for_every_attempt_and_a_rotated_ca_is_used_and_logged(
    second: int, logged: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    script = Script(clock).queue(
        assertion(), ca(1), error_response(503), assertion(), ca(second), token_response("t")
    )

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        script.run(proxy_engine(clock).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE, CA_FILE, TOKEN_FILE, CA_FILE]
    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(second)]
    messages = [record.getMessage() for record in caplog.records]
    assert [message for message in messages if "AZURE_KUBERNETES_CA_FILE" in message] == logged


@pytest.mark.parametrize(
    ("read", "why"),
    [
        (KeyFileResult(content=""), "AZURE_KUBERNETES_CA_FILE is empty"),
        (KeyFileResult(content=None), "AZURE_KUBERNETES_CA_FILE is empty"),
        (
            KeyFileResult(content="not a certificate"),
            "AZURE_KUBERNETES_CA_FILE is not usable: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
        ),
        (
            KeyFileResult(content="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            "AZURE_KUBERNETES_CA_FILE is not usable: its PEM certificates do not parse",
        ),
        (
            KeyFileResult(error=("token_proxy_ca_unreadable", "AZURE_KUBERNETES_CA_FILE cannot be read")),
            "AZURE_KUBERNETES_CA_FILE cannot be read",
        ),
        (
            KeyFileResult(content=ca_pem(3), error=("token_proxy_ca_unreadable", "read half-way")),
            "read half-way",
        ),
    ],
    ids=["empty", "none", "no-pem", "bad-pem", "unreadable", "unreadable-with-content"],
)
def test_an_unusable_ca_file_with_no_previous_ca_fails_before_any_request(
    read: KeyFileResult, why: str
) -> None:
    clock = Clock()
    script = Script(clock).queue(assertion(), read)

    error = failure(script, proxy_engine(clock).acquire(RESOURCE))

    assert error.error_code == "invalid_token_proxy_ca" and not isinstance(error, CredentialUnavailableError)
    assert error.source is ManagedIdentitySource.WORKLOAD_IDENTITY and error.status_code is None
    assert str(error).startswith(why)
    assert script.sent == []


@pytest.mark.parametrize(
    ("read", "why"),
    [
        (KeyFileResult(content=""), "AZURE_KUBERNETES_CA_FILE is empty"),
        (
            KeyFileResult(content="not a certificate"),
            "AZURE_KUBERNETES_CA_FILE is not usable: no PEM certificate",
        ),
        (KeyFileResult(error=("token_proxy_ca_unreadable", "cannot be read")), "cannot be read"),
    ],
    ids=["empty", "no-pem", "unreadable"],
)
def test_an_unusable_ca_file_after_a_good_one_keeps_the_previous_ca_and_says_why(
    read: KeyFileResult, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    credential_engine = proxy_engine(clock)
    script = Script(clock).queue(
        assertion(), ca(1), error_response(503), assertion(), read, token_response("t")
    )

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        assert script.run(credential_engine.acquire(RESOURCE)).token == "t"

    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(1)]
    kept = [
        record.getMessage() for record in caplog.records if "keeping the previous CA" in record.getMessage()
    ]
    assert len(kept) == 1 and kept[0].startswith(f"Microsoft Entra token endpoint: {why}")
    assert kept[0].endswith("; keeping the previous CA")


def test_the_previous_ca_is_kept_across_calls_of_the_same_credential() -> None:
    clock = Clock()
    credential_engine = proxy_engine(clock)
    script = Script(clock).queue(assertion(), ca(1), token_response("one", expires_in=600))
    script.run(credential_engine.acquire(RESOURCE))

    script.queue(assertion(), KeyFileResult(content=""), token_response("two"))
    assert script.run(credential_engine.acquire(OTHER_RESOURCE)).token == "two"

    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(1)]


def test_a_good_ca_after_an_unusable_one_is_used() -> None:
    clock = Clock()
    credential_engine = proxy_engine(clock)
    script = Script(clock).queue(assertion(), ca(1), token_response("one"))
    script.run(credential_engine.acquire(RESOURCE))
    script.queue(assertion(), KeyFileResult(content=""), token_response("two"))
    script.run(credential_engine.acquire(OTHER_RESOURCE))

    script.queue(assertion(), ca(2), token_response("three"))
    script.run(credential_engine.acquire("https://a.example"))

    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(1), ca_pem(2)]


def test_an_unreachable_token_proxy_is_named_with_its_variable_and_endpoint() -> None:
    clock = Clock()
    script = Script(clock).queue(
        assertion(),
        ca(1),
        TransportFailure("connect", "refused"),
        assertion(),
        ca(1),
        TransportFailure("connect", "refused"),
    )

    error = failure(script, proxy_engine(clock, retry_total=1).acquire(RESOURCE))

    assert error.error_code == "endpoint_unreachable" and not isinstance(error, CredentialUnavailableError)
    assert str(error).startswith(
        "AKS token proxy at AZURE_KUBERNETES_TOKEN_PROXY (https://127.0.0.1:9/tenant/oauth2/v2.0/token) "
        "did not answer after 2 attempt(s): refused"
    )


# -------------------------------------------- through the credential, both faces, against the emulator


VAULT = "https://vault.azure.net/.default"


TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


SECRET_HEADERS = ("authorization", "x-identity-header", "secret", "metadata")


IDENTITY = UserAssignedIdentity(
    client_id="11111111-aaaa-1111-1111-111111111111",
    object_id="22222222-bbbb-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
)


@pytest.fixture
def emulator(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("workload_identity", identities=[IDENTITY])
    return started


def assert_failed(error: ManagedIdentityError, code: str) -> None:
    assert error.error_code == code, error
    assert not isinstance(error, CredentialUnavailableError)
    assert error.source is ManagedIdentitySource.WORKLOAD_IDENTITY


def failed(credential: Any) -> ManagedIdentityError:
    """What ``credential.get_token(STORAGE)`` raises: a workload identity refusal (failed, not unavailable)."""
    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)
    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.source is ManagedIdentitySource.WORKLOAD_IDENTITY
    return caught.value


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


# the exchange


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
        emulator, _environ=changed(emulator.environ, AZURE_CLIENT_ID=None), client_id=IDENTITY.client_id
    )

    assert decode_jwt(credential.get_token(STORAGE).token)["appid"] == IDENTITY.client_id


@pytest.mark.parametrize("blank", [None, "", "   "], ids=["unset", "empty", "whitespace"])
def test_missing_client_id_fails_at_first_get_token_before_any_request(
    face: Any, emulator: Emulator, blank: Optional[str]
) -> None:
    credential = face.credential(emulator, _environ=changed(emulator.environ, AZURE_CLIENT_ID=blank))
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

    # The keywords: test_spec.py::test_source_refuses_a_selector_it_does_not_take_before_any_request
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


# Entra errors


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


# retries


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
        emulator, _environ=changed(emulator.environ, AZURE_AUTHORITY_HOST=f"http://127.0.0.1:{unused_port}")
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert_failed(caught.value, "endpoint_unreachable")
    assert "AZURE_AUTHORITY_HOST" in str(caught.value)
    assert face.sleeps == [1.0, 2.0, 4.0]


def test_bare_authority_host_gets_https(face: Any, emulator: Emulator) -> None:
    bare = emulator.environ["AZURE_AUTHORITY_HOST"].removeprefix("http://")
    credential = face.credential(
        emulator, _environ=changed(emulator.environ, AZURE_AUTHORITY_HOST=bare), retry_total=0
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)  # TLS to the plain-HTTP emulator: no answer

    assert_failed(caught.value, "endpoint_unreachable")
    assert f"https://{bare}/{TENANT}/oauth2/v2.0/token" in str(caught.value)
    assert emulator.tokens_issued == 0


# the file


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
    error = failed(
        face.credential(emulator, _environ=changed(emulator.environ, AZURE_FEDERATED_TOKEN_FILE=str(stale)))
    )

    assert_failed(error, "invalid_client")
    assert "AADSTS700024" in str(error)
    assert error.correlation_id


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
    error = failed(
        face.credential(emulator, _environ=changed(emulator.environ, AZURE_FEDERATED_TOKEN_FILE=str(path)))
    )

    assert_failed(error, "federated_token_file_unreadable")
    assert "AZURE_FEDERATED_TOKEN_FILE" in str(error)
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


# configuration


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
    credential = face.credential(emulator, _environ=changed(emulator.environ, **{variable: value}))
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


# capabilities


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


# secrets


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


# proxies


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
    credential = face.credential(emulator, _environ=changed(emulator.environ, AZURE_AUTHORITY_HOST=authority))

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
        _environ=changed(emulator.environ, AZURE_AUTHORITY_HOST=authority),
        proxies={"http": proxy},
        retry_total=0,
    )

    assert credential.get_token(STORAGE).token
    assert emulator.requests[0].headers["host"] == f"127.0.0.1:{unused_port}"


# --------------------------------------- through the AKS token proxy, both faces, against the emulator
# The ``proxy`` fixture (tests/conftest.py) starts the emulator behind the token proxy.


def proxied(face: Any, emulator: Emulator, **kwargs: Any) -> Any:
    kwargs.setdefault("_environ", dict(emulator.environ))
    kwargs.setdefault("retry_total", 0)
    return face.credential(enable_azure_proxy=True, **kwargs)


def refused(face: Any, emulator: Emulator, **kwargs: Any) -> ManagedIdentityError:
    return failed(proxied(face, emulator, **kwargs))


# the proxy is used


def test_the_token_request_reaches_the_proxy_with_its_path_sni_and_ca(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)

    token = credential.get_token(STORAGE)

    [request] = proxy.requests
    assert request.scheme == "https"
    assert request.server_name == TOKEN_PROXY_SERVER_NAME  # SNI: the name, not the address it listens on
    assert (
        request.path == f"/aks-token-proxy/{TENANT}/oauth2/v2.0/token"
    )  # the request's path after the proxy's
    assert request.method == "POST"
    assert request.form["client_assertion"] == proxy.assertion
    assert request.form["client_id"] == proxy.system_identity.client_id
    assert request.form["scope"] == "https://storage.azure.com/.default"
    assert request.headers["x-ms-client-request-id"]
    assert token.token == proxy.issued_tokens()[-1]
    assert credential.source is ManagedIdentitySource.WORKLOAD_IDENTITY


def test_ca_data_instead_of_the_file(face: Any, proxy: Emulator) -> None:
    pem = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"]).read_text()
    environ = changed(proxy.environ, AZURE_KUBERNETES_CA_FILE=None, AZURE_KUBERNETES_CA_DATA=pem)

    proxied(face, proxy, _environ=environ).get_token(STORAGE)

    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME]


def test_a_proxy_without_a_path_counts_as_slash(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity", token_proxy=True, proxy_path="/")
    base = emulator.environ["AZURE_AUTHORITY_HOST"]
    for value in (base, base + "/"):
        environ = changed(emulator.environ, AZURE_KUBERNETES_TOKEN_PROXY=value)
        proxied(face, emulator, _environ=environ).get_token(STORAGE)
    assert [r.path for r in emulator.requests] == [f"/{TENANT}/oauth2/v2.0/token"] * 2


def test_a_proxy_path_with_a_trailing_slash_is_joined_once(face: Any, proxy: Emulator) -> None:
    environ = changed(
        proxy.environ, AZURE_KUBERNETES_TOKEN_PROXY=proxy.environ["AZURE_KUBERNETES_TOKEN_PROXY"] + "/"
    )
    proxied(face, proxy, _environ=environ).get_token(STORAGE)
    assert proxy.requests[0].path == f"/aks-token-proxy/{TENANT}/oauth2/v2.0/token"


def test_environment_proxies_are_not_used_toward_the_token_proxy(
    face: Any, proxy: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens on port 9: a request sent through this proxy would fail
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")

    proxied(face, proxy, proxies={"https": "http://127.0.0.1:9"}).get_token(STORAGE)

    assert len(proxy.requests) == 1


def test_a_supplied_transport_is_gone_around_with_a_warning(
    face: Any, proxy: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    if face.is_async:
        from azure.core.pipeline.transport import AioHttpTransport

        transport: Any = AioHttpTransport()
    else:
        from azure.core.pipeline.transport import RequestsTransport

        transport = RequestsTransport()
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        proxied(face, proxy, transport=transport).get_token(STORAGE)
    assert len(proxy.requests) == 1
    assert "AKS token proxy" in caplog.text


def test_the_async_face_without_aiohttp_checks_the_ca_and_name_too(
    proxy: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import msi_credential._transport.aio as aio
    from msi_credential.aio import ManagedIdentityCredential

    monkeypatch.setattr(aio, "aiohttp", None)  # azure-core's requests-in-a-thread transport

    async def token(environ: dict[str, str]) -> Any:
        async with ManagedIdentityCredential(
            _environ=environ, enable_azure_proxy=True, share_cache=False, retry_total=0
        ) as credential:
            return await credential.get_token(STORAGE)

    asyncio.run(token(proxy.environ))
    with pytest.raises(ManagedIdentityError) as caught:
        asyncio.run(token(changed(proxy.environ, AZURE_KUBERNETES_SNI_NAME="other.msi-emulator.invalid")))

    assert caught.value.error_code == "endpoint_unreachable"
    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME]


def test_a_server_name_with_a_trailing_dot_is_the_same_name_on_both_faces(face: Any, proxy: Emulator) -> None:
    """A fully qualified name may end with the root's dot: sent and verified without it, the same on both faces."""
    environ = changed(proxy.environ, AZURE_KUBERNETES_SNI_NAME=TOKEN_PROXY_SERVER_NAME + ".")

    token = proxied(face, proxy, _environ=environ).get_token(STORAGE)

    assert token.token == proxy.issued_tokens()[-1]
    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME]


# TLS is checked


def test_a_wrong_ca_sends_nothing(face: Any, proxy: Emulator) -> None:
    environ = changed(proxy.environ, AZURE_KUBERNETES_CA_FILE=None, AZURE_KUBERNETES_CA_DATA=ca_pem(0))

    error = refused(face, proxy, _environ=environ)

    assert error.error_code == "endpoint_unreachable"
    assert error.message.startswith("AKS token proxy at AZURE_KUBERNETES_TOKEN_PROXY (https://127.0.0.1:")
    assert error.client_request_id is not None and error.client_request_id in error.message
    assert proxy.requests == []
    assert proxy.assertion not in str(error) and proxy.assertion not in repr(error)


def test_system_cas_do_not_trust_the_proxy(face: Any, proxy: Emulator) -> None:
    environ = changed(proxy.environ, AZURE_KUBERNETES_CA_FILE=None)

    assert refused(face, proxy, _environ=environ).error_code == "endpoint_unreachable"
    assert proxy.requests == []


@pytest.mark.parametrize("server_name", ["other.msi-emulator.invalid", None])
def test_a_wrong_or_missing_server_name_sends_nothing(
    face: Any, proxy: Emulator, server_name: Optional[str]
) -> None:
    # the emulator answers any SNI with its certificate (as most servers do): the client must refuse it
    environ = changed(proxy.environ, AZURE_KUBERNETES_SNI_NAME=server_name)

    assert refused(face, proxy, _environ=environ).error_code == "endpoint_unreachable"
    assert proxy.requests == []


def test_tls_is_checked_even_with_connection_verify_false(face: Any, proxy: Emulator) -> None:
    environ = changed(proxy.environ, AZURE_KUBERNETES_CA_FILE=None, AZURE_KUBERNETES_CA_DATA=ca_pem(0))

    refused(face, proxy, _environ=environ, connection_verify=False)

    assert proxy.requests == []


# CA rotation


def test_a_rotated_ca_file_is_picked_up(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    ca_file = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"])
    before = ca_file.read_text()

    proxy.rotate_proxy_ca()  # the server presents a certificate of a new CA, the file holds the new CA
    assert ca_file.read_text() != before
    credential.get_token(VAULT)

    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME] * 2


def test_the_rotated_server_is_refused_while_the_file_still_holds_the_old_ca(
    face: Any, proxy: Emulator
) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    ca_file = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"])
    old = ca_file.read_text()

    proxy.rotate_proxy_ca()
    ca_file.write_text(old)  # the cluster has not written the new CA yet
    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "endpoint_unreachable"
    assert len(proxy.requests) == 1


def test_an_empty_ca_file_keeps_the_previous_ca(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"]).write_text("")  # mid-rotation

    credential.get_token(VAULT)

    assert len(proxy.requests) == 2


def test_an_unreadable_ca_file_after_a_good_one_keeps_the_previous_ca(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    os.remove(proxy.environ["AZURE_KUBERNETES_CA_FILE"])

    credential.get_token(VAULT)

    assert len(proxy.requests) == 2


def test_an_empty_ca_file_at_the_first_request_is_refused_before_sending(
    face: Any, proxy: Emulator, tmp_path: Path
) -> None:
    empty = tmp_path / "ca.pem"
    empty.write_text("")
    error = refused(face, proxy, _environ=changed(proxy.environ, AZURE_KUBERNETES_CA_FILE=str(empty)))
    assert error.error_code == "invalid_token_proxy_ca"
    assert "AZURE_KUBERNETES_CA_FILE" in error.message
    assert proxy.requests == []


# bad configuration


def _garbage_file(tmp_path: Path) -> str:
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate")
    return str(path)


BAD_PROXY_URLS = [
    "http://127.0.0.1:1/proxy",
    "https://user:pass@127.0.0.1:1/proxy",
    "https://user@127.0.0.1:1",
    "https://127.0.0.1:1/proxy?x=1",
    "https://127.0.0.1:1/proxy?",
    "https://127.0.0.1:1/proxy#fragment",
    "ftp://127.0.0.1:1/",
    "https:///no-host",
    "https://127.0.0.1:99999/",
    "127.0.0.1:1",
    "https://127.0.0.1:1/pro xy",
]


@pytest.mark.parametrize("url", BAD_PROXY_URLS)
def test_a_bad_proxy_url_is_refused_naming_the_variable(face: Any, proxy: Emulator, url: str) -> None:
    error = refused(face, proxy, _environ=changed(proxy.environ, AZURE_KUBERNETES_TOKEN_PROXY=url))
    assert error.error_code in ("invalid_token_proxy", "invalid_endpoint")
    assert "AZURE_KUBERNETES_TOKEN_PROXY" in error.message
    assert proxy.requests == []


@pytest.mark.parametrize(
    ("changes", "code", "named"),
    [
        ({"AZURE_KUBERNETES_CA_DATA": "-"}, "invalid_token_proxy_ca", "AZURE_KUBERNETES_CA_DATA"),
        (
            {"AZURE_KUBERNETES_CA_FILE": None, "AZURE_KUBERNETES_CA_DATA": "not a certificate"},
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_DATA",
        ),
        (
            {
                "AZURE_KUBERNETES_CA_FILE": None,
                "AZURE_KUBERNETES_CA_DATA": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            },
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_DATA",
        ),
        (
            {"AZURE_KUBERNETES_CA_FILE": "/nonexistent/ca.pem"},
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_FILE",
        ),
        ({"AZURE_KUBERNETES_CA_FILE": "GARBAGE"}, "invalid_token_proxy_ca", "AZURE_KUBERNETES_CA_FILE"),
        ({"AZURE_KUBERNETES_CA_FILE": "DIRECTORY"}, "invalid_token_proxy_ca", "AZURE_KUBERNETES_CA_FILE"),
        ({"AZURE_KUBERNETES_SNI_NAME": "bad name"}, "invalid_token_proxy_sni", "AZURE_KUBERNETES_SNI_NAME"),
        ({"AZURE_KUBERNETES_SNI_NAME": "a/b"}, "invalid_token_proxy_sni", "AZURE_KUBERNETES_SNI_NAME"),
        ({"AZURE_KUBERNETES_TOKEN_PROXY": None}, "invalid_token_proxy", "AZURE_KUBERNETES_TOKEN_PROXY"),
        (
            {"AZURE_KUBERNETES_TOKEN_PROXY": None, "AZURE_KUBERNETES_CA_FILE": None},
            "invalid_token_proxy",
            "AZURE_KUBERNETES_SNI_NAME",
        ),
        (
            {"AZURE_KUBERNETES_TOKEN_PROXY": None, "AZURE_KUBERNETES_SNI_NAME": None},
            "invalid_token_proxy",
            "AZURE_KUBERNETES_CA_FILE",
        ),
        (
            {
                "AZURE_KUBERNETES_TOKEN_PROXY": None,
                "AZURE_KUBERNETES_SNI_NAME": None,
                "AZURE_KUBERNETES_CA_FILE": None,
                "AZURE_KUBERNETES_CA_DATA": "x",
            },
            "invalid_token_proxy",
            "AZURE_KUBERNETES_CA_DATA",
        ),
    ],
)
def test_each_bad_configuration_is_refused_before_any_request(
    face: Any, proxy: Emulator, tmp_path: Path, changes: dict[str, Optional[str]], code: str, named: str
) -> None:
    special = {"GARBAGE": _garbage_file(tmp_path), "DIRECTORY": str(tmp_path)}
    resolved = {name: special.get(value, value) if value else value for name, value in changes.items()}

    error = refused(face, proxy, _environ=changed(proxy.environ, **resolved))

    assert error.error_code == code
    assert named in error.message
    assert proxy.requests == []
    assert pickle.loads(pickle.dumps(error)).error_code == code


def test_both_ca_variables_are_refused(face: Any, proxy: Emulator) -> None:
    pem = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"]).read_text()
    error = refused(face, proxy, _environ=changed(proxy.environ, AZURE_KUBERNETES_CA_DATA=pem))
    assert error.error_code == "invalid_token_proxy_ca"
    assert "AZURE_KUBERNETES_CA_FILE" in error.message and "AZURE_KUBERNETES_CA_DATA" in error.message
    assert proxy.requests == []


# without opting in


def test_without_the_opt_in_the_variables_are_ignored(face: Any, proxy: Emulator) -> None:
    # even an invalid proxy configuration: the credential goes to AZURE_AUTHORITY_HOST as before
    environ = changed(proxy.environ, AZURE_KUBERNETES_TOKEN_PROXY="http://bad", AZURE_KUBERNETES_CA_DATA="x")
    credential = face.credential(_environ=environ, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    # AZURE_AUTHORITY_HOST is the emulator's address, whose certificate names neither it nor a trusted CA
    assert caught.value.error_code == "endpoint_unreachable"
    assert "AZURE_AUTHORITY_HOST" in caught.value.message
    assert proxy.requests == []


# Workload identity's own check before any request (``sources/workload_identity.py`` ``check``).


def test_workload_identity_without_a_client_id_says_how_to_give_one() -> None:
    config = run(_workload())

    assert workload_identity.check(config, Identity("client_id", None)) == (
        "missing_client_id",
        "workload identity needs a client id: pass client_id= or set AZURE_CLIENT_ID",
    )
