"""The engine's rules per source, through the scripted driver (tests/engine/scripted.py): the request on the wire, the
error contract, the timing handed to the transport, the cache effect. No sockets, an injected clock.

Written against the surviving mutants of `flow.py` and `sources/` (docs/mutation.md); each test checks behaviour
through ``Engine.acquire`` as a credential drives it, never a private helper.
"""

from __future__ import annotations

import email.utils
import json
import logging
from typing import Any, Optional

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.effects import KeyFileResult, Response, TransportFailure
from msi_credential._setup import build_engine

from .engine.scripted import APP_SERVICE, ARC, IMDS, Clock, Script, engine, error_response, token_response

RESOURCE = "https://storage.azure.com"
TOKEN_FILE = "/var/run/secrets/azure/tokens/azure-identity-token"
WORKLOAD = {
    "AZURE_FEDERATED_TOKEN_FILE": TOKEN_FILE,
    "AZURE_TENANT_ID": "tenant",
    "AZURE_CLIENT_ID": "client-a",
    "AZURE_AUTHORITY_HOST": "http://127.0.0.1:9",
}
SERVICE_FABRIC = {
    "IDENTITY_ENDPOINT": "https://127.0.0.1:9/metadata/identity/oauth2/token",
    "IDENTITY_HEADER": "sf-secret",
    "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
}
MACHINE_LEARNING = {"MSI_ENDPOINT": "http://127.0.0.1:9/msi/token", "MSI_SECRET": "ml-secret"}
CLOUD_SHELL = {"MSI_ENDPOINT": "http://127.0.0.1:9/oauth2/token"}
WINDOWS_KEYS = "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens"


def check(
    error: BaseException,
    code: str,
    source: ManagedIdentitySource,
    *,
    status: Optional[int] = None,
    unavailable: bool = False,
) -> None:
    assert isinstance(error, ManagedIdentityError)
    assert isinstance(error, CredentialUnavailableError) is unavailable
    assert error.error_code == code
    assert error.status_code == status
    assert error.source is source


def failure(script: Script, flow: Any) -> ManagedIdentityError:
    with pytest.raises(ManagedIdentityError) as caught:
        script.run(flow)
    return caught.value


def assertion(content: str = "federated-assertion") -> KeyFileResult:
    return KeyFileResult(content=content)


# ---------------------------------------------------------------------------------------- workload identity


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

    check(error, "federated_token_file_unreadable", ManagedIdentitySource.WORKLOAD_IDENTITY)
    assert str(error).startswith(why)
    assert script.sent == []


def test_workload_identity_without_a_client_id_is_refused_before_reading_the_token_file() -> None:
    clock = Clock()
    environ = {key: value for key, value in WORKLOAD.items() if key != "AZURE_CLIENT_ID"}
    script = Script(clock)

    error = failure(script, engine(environ, clock).acquire(RESOURCE))

    check(error, "missing_client_id", ManagedIdentitySource.WORKLOAD_IDENTITY)
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


# ----------------------------------------------------------------------------------- timeouts, every source


@pytest.mark.parametrize(
    ("environ", "answers"),
    [
        pytest.param(APP_SERVICE, 0, id="app_service"),
        pytest.param(ARC, 0, id="azure_arc"),
        pytest.param(CLOUD_SHELL, 0, id="cloud_shell"),
        pytest.param(IMDS, 0, id="imds"),
        pytest.param(MACHINE_LEARNING, 0, id="machine_learning"),
        pytest.param(SERVICE_FABRIC, 0, id="service_fabric"),
        pytest.param(WORKLOAD, 1, id="workload_identity"),
    ],
)
def test_the_timeout_keywords_reach_every_sources_request(environ: dict[str, str], answers: int) -> None:
    clock = Clock()
    script = Script(clock).queue(*[assertion()] * answers, token_response("t"))

    credential_engine = engine(environ, clock, connection_timeout=0.5, read_timeout=3, _platform="linux")
    script.run(credential_engine.acquire(RESOURCE))

    assert [(request.connect_timeout, request.read_timeout) for request in script.sent] == [(0.5, 3.0)]


# ------------------------------------------------------------------------------------------- Service Fabric


def test_service_fabric_sends_client_capabilities_as_xms_cc() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("sf"))

    script.run(engine(SERVICE_FABRIC, clock, client_capabilities=["cp1", "cp2"]).acquire(RESOURCE))

    assert dict(script.sent[0].params)["xms_cc"] == "cp1,cp2"


def test_app_service_never_sends_client_capabilities() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("as"))

    script.run(engine(APP_SERVICE, clock, client_capabilities=["cp1"]).acquire(RESOURCE))

    assert "xms_cc" not in dict(script.sent[0].params)


def test_a_plain_refresh_on_service_fabric_names_no_token_to_revoke() -> None:
    clock = Clock()
    credential_engine = engine(SERVICE_FABRIC, clock)
    script = Script(clock).queue(token_response("old"), token_response("new"))
    old = script.run(credential_engine.acquire(RESOURCE))
    assert old.refresh_on is not None
    clock.now = old.refresh_on

    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"
    assert all("token_sha256_to_refresh" not in dict(request.params) for request in script.sent)


# ---------------------------------------------------------------------------------------------------- Azure Arc


def _arc(directory: str, platform: str = "linux", **kwargs: Any) -> tuple[Any, Script]:
    clock = Clock()
    credential_engine = engine(ARC, clock, _platform=platform, _arc_key_directory=directory, **kwargs)
    return credential_engine, Script(clock)


def _challenge(realm: Optional[str]) -> Response:
    return Response(401, {} if realm is None else {"www-authenticate": realm}, b"")


@pytest.mark.parametrize(
    ("answers", "code", "why"),
    [
        ([_challenge(None)], "arc_challenge_missing", "401 without a WWW-Authenticate challenge"),
        (
            [_challenge("Bearer realm=x")],
            "arc_challenge_invalid",
            "the challenge is not 'Basic realm=<key file>'",
        ),
        ([_challenge("Basic realm=")], "arc_challenge_invalid", "the challenge names no key file"),
        (
            [_challenge("Basic realm={dir}/" + "a" * 65_536 + ".key")],
            "arc_challenge_invalid",
            "the challenge is over 8192 characters",
        ),
        (
            [_challenge("Basic realm={dir}/agent.key"), KeyFileResult(content="")],
            "arc_invalid_key_file",
            "the key file is empty",
        ),
        (
            [
                _challenge("Basic realm={dir}/agent.key"),
                KeyFileResult(error=("arc_key_file_unreadable", "the key file cannot be read")),
            ],
            "arc_key_file_unreadable",
            "the key file cannot be read",
        ),
        (
            [
                _challenge("Basic realm={dir}/agent.key"),
                KeyFileResult(content="arc-secret"),
                _challenge("Basic realm={dir}/agent.key"),
            ],
            "arc_challenge_rejected",
            "the agent refused the key file's secret",
        ),
    ],
)
def test_arc_challenge_refusals_say_what_was_wrong(
    tmp_path: Any, answers: list[Any], code: str, why: str
) -> None:
    credential_engine, script = _arc(str(tmp_path))
    for answer in answers:
        if isinstance(answer, Response) and "www-authenticate" in answer.headers:
            realm = answer.headers["www-authenticate"].format(dir=tmp_path)
            answer = Response(401, {"www-authenticate": realm}, b"")
        script.queue(answer)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, code, ManagedIdentitySource.AZURE_ARC, status=401)
    assert str(error).startswith(f"Azure Arc managed identity endpoint: {why}")


@pytest.mark.parametrize(
    ("directory", "realm"),
    [
        (WINDOWS_KEYS, "Basic realm=c:\\programdata\\azureconnectedmachineagent\\tokens\\Agent.KEY"),
        (WINDOWS_KEYS + "\\", f"Basic realm={WINDOWS_KEYS}\\agent.key"),
        ("C:\\", "Basic realm=C:\\agent.key"),  # a key directory at the root of a drive
    ],
)
def test_arc_on_windows_reads_a_key_file_of_the_key_directory(directory: str, realm: str) -> None:
    credential_engine, script = _arc(directory, platform="win32")
    script.queue(_challenge(realm), KeyFileResult(content="arc-secret"), token_response("arc"))

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [realm.removeprefix("Basic realm=")]
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"


def test_arc_on_windows_refuses_a_key_file_outside_the_key_directory() -> None:
    credential_engine, script = _arc(WINDOWS_KEYS, platform="win32")
    script.queue(_challenge("Basic realm=C:\\Users\\Public\\agent.key"))

    check(
        failure(script, credential_engine.acquire(RESOURCE)),
        "arc_invalid_key_file",
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )
    assert script.reads == []


def test_arc_accepts_a_key_file_name_with_spaced_dots(tmp_path: Any) -> None:
    # ".." is refused as a path component, not as text inside a file name
    credential_engine, script = _arc(str(tmp_path))
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent .. 1.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent .. 1.key"]


def test_an_arc_answer_for_another_identity_is_a_failed_200_from_azure_arc(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path), client_id="wanted-client")
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc", client_id="other-client"),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "arc_identity_not_confirmed", ManagedIdentitySource.AZURE_ARC, status=200)


def test_an_arc_connection_failure_is_retried_before_any_challenge(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path))
    script.queue(
        TransportFailure("connect", "refused"),
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.sleeps == [1.0] and len(script.sent) == 3


def test_a_401_from_a_source_without_a_challenge_is_its_http_error() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(401))

    error = failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE))

    check(error, "server_error", ManagedIdentitySource.APP_SERVICE, status=401)
    assert script.reads == [] and len(script.sent) == 1


def test_arc_found_by_its_agent_names_the_endpoint_when_it_never_answers() -> None:
    clock = Clock()
    credential_engine = engine({}, clock, _platform="linux", _path_exists=lambda path: True, retry_total=0)
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "endpoint_unreachable", ManagedIdentitySource.AZURE_ARC)
    assert "at the endpoint (http://127.0.0.1:40342/metadata/identity/oauth2/token)" in str(error)


# --------------------------------------------------------------------------------------------------- retries


def test_imds_gone_is_retried_on_the_ten_second_schedule() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(410), error_response(410), token_response("imds"))

    assert script.run(engine(IMDS, clock).acquire(RESOURCE)).token == "imds"
    assert script.sleeps == [10.0, 10.0]


def test_imds_retries_a_404_that_other_sources_raise() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(404), token_response("imds"), error_response(404))

    assert script.run(engine(IMDS, clock).acquire(RESOURCE)).token == "imds"
    assert script.sleeps == [1.0]
    assert failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE)).status_code == 404
    assert script.sleeps == [1.0]


def test_a_retry_after_date_is_counted_from_the_injected_clock() -> None:
    clock = Clock()
    later = email.utils.formatdate(clock.now + 5, usegmt=True)
    script = Script(clock).queue(error_response(503, {"retry-after": later}), token_response("t"))

    script.run(engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert script.sleeps == [5.0]


def _default_imds(monkeypatch: pytest.MonkeyPatch) -> None:
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", "http://127.0.0.1:9")


def test_imds_keeps_the_connection_timeout_keyword_after_its_first_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _default_imds(monkeypatch)
    clock = Clock()
    script = Script(clock).queue(error_response(503), token_response("imds"))

    script.run(engine({}, clock, connection_timeout=0.5).acquire(RESOURCE))

    assert [request.connect_timeout for request in script.sent] == [0.5, 0.5]


def test_imds_that_answered_once_retries_a_later_connection_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    _default_imds(monkeypatch)
    clock = Clock()
    script = Script(clock).queue(
        error_response(503), TransportFailure("connect", "refused"), token_response("imds")
    )

    assert script.run(engine({}, clock).acquire(RESOURCE)).token == "imds"
    assert script.sleeps == [1.0, 2.0]


# ----------------------------------------------------------------------------------------- errors, messages


def test_the_unreachable_error_keeps_the_endpoint_secret_out() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect", "refused by proxy for header-secret"))

    error = failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))

    check(error, "endpoint_unreachable", ManagedIdentitySource.APP_SERVICE)
    assert "refused by proxy" in str(error) and "header-secret" not in str(error)


def test_a_token_answer_without_a_token_is_an_error_of_the_source() -> None:
    clock = Clock()
    body = json.dumps({"expires_in": 3600}).encode()
    script = Script(clock).queue(Response(200, {"content-type": "application/json"}, body))

    error = failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert error.source is ManagedIdentitySource.APP_SERVICE and error.status_code == 200


def test_a_configuration_problem_is_raised_with_its_message() -> None:
    clock = Clock()
    environ = {"IDENTITY_ENDPOINT": "http://10.0.0.1/msi/token", "IDENTITY_HEADER": "h"}

    error = failure(Script(clock), engine(environ, clock).acquire(RESOURCE))

    check(error, "invalid_endpoint", ManagedIdentitySource.APP_SERVICE)
    assert str(error).startswith("IDENTITY_ENDPOINT must be an http(s) URL to a loopback or link-local host")


# ------------------------------------------------------------------------------------------ cache windows, keys


def test_the_mandatory_moment_itself_requests_even_during_the_advisory_back_off() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(token_response("old"))
    old = script.run(credential_engine.acquire(RESOURCE))
    clock.now = old.expires_on - 70  # advisory window; the 30 s back-off outlasts the mandatory moment
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "old"

    clock.now = old.expires_on - 60  # the mandatory moment, inside the back-off
    script.queue(token_response("new"))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"


def test_serving_the_cached_token_after_a_failed_refresh_is_logged_with_source_resource_and_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(token_response("old"))
    old = script.run(credential_engine.acquire(RESOURCE))
    assert old.refresh_on is not None
    clock.now = old.refresh_on
    script.queue(error_response(500))

    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        assert script.run(credential_engine.acquire(RESOURCE)).token == "old"

    messages = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert messages == [
        f"App Service managed identity endpoint: refreshing the token for {RESOURCE} failed (server_error); "
        "serving the cached token, which is still valid"
    ]


def test_default_client_ids_that_only_upper_case_alike_keep_separate_tokens() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("one"), token_response("two"))
    first = engine(dict(MACHINE_LEARNING, DEFAULT_IDENTITY_CLIENT_ID="straße"), clock, share_cache=True)
    other = engine(dict(MACHINE_LEARNING, DEFAULT_IDENTITY_CLIENT_ID="STRASSE"), clock, share_cache=True)

    assert script.run(first.acquire(RESOURCE)).token == "one"
    assert script.run(other.acquire(RESOURCE)).token == "two"


# ------------------------------------------------------------------------------------------ client request ids


def test_each_attempt_carries_a_new_client_request_id_and_the_error_names_the_last() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(503), error_response(503))

    error = failure(script, engine(APP_SERVICE, clock, retry_total=1).acquire(RESOURCE))

    ids = [request.headers["x-ms-client-request-id"] for request in script.sent]
    assert len(set(ids)) == 2 and all(len(value) == 36 for value in ids)
    assert error.client_request_id == ids[-1] and ids[-1] in str(error)


def test_a_fixed_request_id_is_sent_on_every_attempt() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(503), token_response("t"))

    script.run(engine(APP_SERVICE, clock, request_id="fixed-id").acquire(RESOURCE))

    assert [request.headers["x-ms-client-request-id"] for request in script.sent] == ["fixed-id", "fixed-id"]


def test_without_automatic_request_ids_nothing_is_sent_and_the_error_names_none() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(400))

    error = failure(script, engine(APP_SERVICE, clock, auto_request_id=False).acquire(RESOURCE))

    assert "x-ms-client-request-id" not in script.sent[0].headers
    assert error.client_request_id is None and "x-ms-client-request-id" not in str(error)


def test_an_error_before_any_request_names_no_client_request_id() -> None:
    clock = Clock()
    script = Script(clock).queue(KeyFileResult(error=("federated_token_file_unreadable", "cannot be read")))

    error = failure(script, engine(WORKLOAD, clock).acquire(RESOURCE))

    assert error.client_request_id is None and "x-ms-client-request-id" not in str(error)
