"""Engine flows driven without sockets (tests/engine/scripted.py): the error contract of each refusal, window edges,
attempt timeouts. Written against the survivors of the mutation run (docs/mutation.md)."""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.effects import KeyFileResult, Response, TransportFailure
from msi_credential._engine.sources.azure_arc import valid_key_path

from .engine.scripted import (
    APP_SERVICE,
    ARC,
    IMDS,
    START,
    Clock,
    Script,
    engine,
    error_response,
    token_response,
)

RESOURCE = "https://storage.azure.com"
CLOUD_SHELL = {"MSI_ENDPOINT": "http://127.0.0.1:9/oauth2/token"}


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
    assert str(error)


def failure(script: Script, flow: Any) -> ManagedIdentityError:
    with pytest.raises(ManagedIdentityError) as caught:
        script.run(flow)
    return caught.value


# ---------------------------------------------------------------------------------------------------- Azure Arc


def _arc(tmp_path: Any, platform: str = "linux", **kwargs: Any) -> tuple[Any, Script]:
    clock = Clock()
    return engine(ARC, clock, _platform=platform, _arc_key_directory=str(tmp_path), **kwargs), Script(clock)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "arc_challenge_missing"),
        ("   ", "arc_challenge_missing"),
        ("Bearer realm=/x/agent.key", "arc_challenge_invalid"),
        ("Basic realm=", "arc_challenge_invalid"),
        ('Basic realm=""', "arc_challenge_invalid"),
        ("Basic realm=/elsewhere/agent.key", "arc_invalid_key_file"),
        ("Basic realm={dir}/agent.txt", "arc_invalid_key_file"),
        ("Basic realm={dir}/../agent.key", "arc_invalid_key_file"),
        ("Basic realm={dir}/" + "a" * 65_536 + ".key", "arc_challenge_invalid"),  # over the size bound
    ],
)
def test_arc_refuses_a_bad_challenge_before_reading_any_file(
    tmp_path: Any, header: Optional[str], code: str
) -> None:
    credential_engine, script = _arc(tmp_path)
    headers = {} if header is None else {"www-authenticate": header.format(dir=tmp_path)}
    script.queue(Response(401, headers, b""))

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, code, ManagedIdentitySource.AZURE_ARC, status=401)
    assert script.reads == [] and len(script.sent) == 1


@pytest.mark.parametrize("header", ['basic REALM="{dir}/agent.key"', "  Basic realm= {dir}/agent.key  "])
def test_arc_challenge_prefix_is_case_insensitive_and_the_path_may_be_quoted(
    tmp_path: Any, header: str
) -> None:
    credential_engine, script = _arc(tmp_path)
    script.queue(
        Response(401, {"www-authenticate": header.format(dir=tmp_path)}, b""),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent.key"]
    assert script.sent[0].headers.get("Authorization") is None
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"
    assert script.sent[1].url == script.sent[0].url and script.sent[1].params == script.sent[0].params


def test_arc_on_another_platform_is_refused(tmp_path: Any) -> None:
    credential_engine, script = _arc(tmp_path, platform="darwin")
    script.queue(Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""))

    check(
        failure(script, credential_engine.acquire(RESOURCE)),
        "arc_platform_unsupported",
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (KeyFileResult(error=("arc_key_file_unreadable", "cannot read")), "arc_key_file_unreadable"),
        (KeyFileResult(content=""), "arc_invalid_key_file"),
    ],
)
def test_arc_key_file_problems_are_typed_errors(tmp_path: Any, result: KeyFileResult, code: str) -> None:
    credential_engine, script = _arc(tmp_path)
    script.queue(Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""), result)

    check(
        failure(script, credential_engine.acquire(RESOURCE)),
        code,
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )
    assert len(script.sent) == 1


def test_arc_second_401_is_a_rejected_key_and_the_secret_stays_out_of_the_error(tmp_path: Any) -> None:
    credential_engine, script = _arc(tmp_path)
    script.queue(
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""),
        KeyFileResult(content="arc-secret"),
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b"arc-secret"),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "arc_challenge_rejected", ManagedIdentitySource.AZURE_ARC, status=401)
    assert "arc-secret" not in str(error)


def test_arc_secret_is_scrubbed_from_a_later_error(tmp_path: Any) -> None:
    credential_engine, script = _arc(tmp_path, retry_total=0)
    body = b'{"error": "server_error", "error_description": "bad key arc-secret"}'
    script.queue(
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""),
        KeyFileResult(content="arc-secret"),
        Response(500, {"content-type": "application/json"}, body),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    assert error.status_code == 500 and "arc-secret" not in str(error)


@pytest.mark.parametrize(
    ("path", "directory", "windows", "valid"),
    [
        ("/var/opt/azcmagent/tokens/a.key", "/var/opt/azcmagent/tokens", False, True),
        ("/var/opt/azcmagent/tokens/a.key", "/var/opt/azcmagent/tokens/", False, True),
        ("/var/opt/azcmagent/tokens/.key", "/var/opt/azcmagent/tokens", False, False),
        ("/var/opt/azcmagent/tokens/a.KEY", "/var/opt/azcmagent/tokens", False, False),
        ("/var/opt/azcmagent/tokens/sub/a.key", "/var/opt/azcmagent/tokens", False, False),
        ("/var/opt/azcmagent/tokens/../a.key", "/var/opt/azcmagent/tokens", False, False),
        ("var/opt/azcmagent/tokens/a.key", "var/opt/azcmagent/tokens", False, False),
        (
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.key",
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens",
            True,
            True,
        ),
        (
            "c:\\programdata\\azureconnectedmachineagent\\tokens\\A.KEY",
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\",
            True,
            True,
        ),
        (
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\.key",
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens",
            True,
            False,
        ),
        (
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\..\\a.key",
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens",
            True,
            False,
        ),
        (
            "C:/ProgramData/AzureConnectedMachineAgent/Tokens/../a.key",
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens",
            True,
            False,
        ),
        ("C:\\Other\\a.key", "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens", True, False),
        (
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.txt",
            "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens",
            True,
            False,
        ),
        ("ProgramData\\a.key", "ProgramData", True, False),
    ],
)
def test_arc_key_path_must_be_a_key_file_directly_in_the_key_directory(
    path: str, directory: str, windows: bool, valid: bool
) -> None:
    assert valid_key_path(path, directory, windows) is valid


# ------------------------------------------------------------------------------------------ unreachable endpoints


def test_a_local_endpoint_that_never_answers_is_a_failure_naming_the_variable_and_the_attempts() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=3)
    script = Script(clock).queue(*[TransportFailure("connect", "refused")] * 4)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "endpoint_unreachable", ManagedIdentitySource.APP_SERVICE)
    assert "IDENTITY_ENDPOINT" in str(error) and "4 attempt(s)" in str(error) and "refused" in str(error)
    assert script.sleeps == [1.0, 2.0, 4.0]


def test_imds_that_never_answers_after_retries_is_unavailable() -> None:
    clock = Clock()
    credential_engine = engine(IMDS, clock, retry_total=1)
    script = Script(clock).queue(*[TransportFailure("read_timeout", "timed out")] * 2)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
    assert "2 attempt(s)" in str(error)


def test_first_contact_with_imds_in_a_chain_is_unavailable_at_the_first_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", "http://127.0.0.1:9")
    clock = Clock()
    credential_engine = engine({}, clock)
    script = Script(clock).queue(TransportFailure("connect_timeout", "no answer"))

    error = failure(script, credential_engine.acquire(RESOURCE, in_chain=True))

    check(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
    assert "127.0.0.1:9" in str(error)
    assert script.sleeps == [] and len(script.sent) == 1
    assert script.sent[0].connect_timeout == 1.0


def test_first_contact_with_imds_on_its_own_has_the_normal_connect_timeout_and_retries() -> None:
    clock = Clock()
    credential_engine = engine({}, clock)
    script = Script(clock).queue(TransportFailure("connect_timeout", "no answer"), token_response())

    info = script.run(credential_engine.acquire(RESOURCE))

    assert info.token
    assert [request.connect_timeout for request in script.sent] == [2.0, 2.0]
    assert script.sleeps == [1.0]


def test_imds_on_its_own_that_never_answers_is_unavailable_after_its_retries() -> None:
    clock = Clock()
    credential_engine = engine({}, clock)
    script = Script(clock).queue(*[TransportFailure("connect_timeout", "no answer")] * 4)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
    assert "4 attempt(s)" in str(error)
    assert script.sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("value", "probed"),
    [
        ("ManagedIdentityCredential", False),
        ("  managedidentitycredential ", False),
        ("MANAGEDIDENTITYCREDENTIAL", False),
        ("prod", True),  # a chain of several credentials: managed identity is not the application's choice
        ("WorkloadIdentityCredential", True),
        ("", True),
    ],
)
def test_imds_named_by_azure_token_credentials_is_not_probed_even_in_a_chain(
    value: str, probed: bool
) -> None:
    clock = Clock()
    credential_engine = engine({"AZURE_TOKEN_CREDENTIALS": value}, clock)
    script = Script(clock).queue(TransportFailure("connect_timeout", "no answer"), token_response())

    if probed:
        error = failure(script, credential_engine.acquire(RESOURCE, in_chain=True))
        check(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
        assert [request.connect_timeout for request in script.sent] == [1.0]
    else:
        assert script.run(credential_engine.acquire(RESOURCE, in_chain=True)).token
        assert [request.connect_timeout for request in script.sent] == [2.0, 2.0]
        assert script.sleeps == [1.0]


def test_a_certificate_pin_mismatch_is_never_retried() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock)
    script = Script(clock).queue(TransportFailure("pin_mismatch", "sha1 differs"))

    check(
        failure(script, credential_engine.acquire(RESOURCE)),
        "thumbprint_mismatch",
        ManagedIdentitySource.APP_SERVICE,
    )
    assert script.sleeps == [] and len(script.sent) == 1


# -------------------------------------------------------------------------------------------- unusable configs


def test_a_configuration_problem_is_raised_before_any_request() -> None:
    clock = Clock()
    credential_engine = engine(
        {"IDENTITY_ENDPOINT": "http://10.0.0.1/msi/token", "IDENTITY_HEADER": "h"}, clock
    )
    script = Script(clock)

    check(
        failure(script, credential_engine.acquire(RESOURCE)),
        "invalid_endpoint",
        ManagedIdentitySource.APP_SERVICE,
    )
    assert script.sent == []


def test_a_user_assigned_identity_where_the_source_has_no_selector_is_refused_before_any_request() -> None:
    clock = Clock()
    credential_engine = engine(CLOUD_SHELL, clock, object_id="00000000-0000-0000-0000-000000000001")
    script = Script(clock)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check(error, "user_assigned_not_supported", ManagedIdentitySource.CLOUD_SHELL)
    assert "object_id" in str(error)
    assert script.sent == []


# ------------------------------------------------------------------------------------------- request details


def test_timeouts_default_to_ten_seconds_read_and_take_the_keywords() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response(), token_response())
    script.run(engine(APP_SERVICE, clock).acquire(RESOURCE))
    script.run(engine(APP_SERVICE, clock, read_timeout=3, connection_timeout=0.5).acquire(RESOURCE))

    assert [(r.connect_timeout, r.read_timeout) for r in script.sent] == [(2.0, 10.0), (0.5, 3.0)]


def test_a_claims_refresh_on_service_fabric_names_the_cached_token_by_its_sha256() -> None:
    clock = Clock()
    environ = {
        "IDENTITY_ENDPOINT": "https://127.0.0.1:9/metadata/identity/oauth2/token",
        "IDENTITY_HEADER": "sf-secret",
        "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
    }
    credential_engine = engine(environ, clock)
    script = Script(clock).queue(token_response("old"), token_response("new"))
    script.run(credential_engine.acquire(RESOURCE))

    assert script.run(credential_engine.acquire(RESOURCE, claims='{"access_token":{}}')).token == "new"
    first, second = (dict(request.params) for request in script.sent)
    assert "token_sha256_to_refresh" not in first
    assert second["token_sha256_to_refresh"] == hashlib.sha256(b"old").hexdigest()


def test_a_claims_request_on_a_source_without_revocation_sends_no_hash() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock)
    script = Script(clock).queue(token_response("old"), token_response("new"))
    script.run(credential_engine.acquire(RESOURCE))
    script.run(credential_engine.acquire(RESOURCE, claims='{"access_token":{}}'))

    assert all("token_sha256_to_refresh" not in dict(request.params) for request in script.sent)


@pytest.mark.parametrize("status", [201, 299])
def test_any_2xx_carries_a_token(status: int) -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("t", status=status))

    assert script.run(engine(APP_SERVICE, clock).acquire(RESOURCE)).token == "t"


def test_a_300_with_a_token_body_is_not_a_token() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("t", status=300))

    assert failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE)).status_code == 300


def test_the_token_type_and_refresh_moment_reach_the_caller() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("t", token_type="PoP", refresh_in=1000))

    info = script.run(engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert info.token_type == "PoP" and info.refresh_on == int(clock.now) + 1000


# --------------------------------------------------------------------------------------------- window edges


def _cached(clock: Clock, **kwargs: Any) -> tuple[Any, Script, Any]:
    credential_engine = engine(APP_SERVICE, clock, retry_total=0, **kwargs)
    script = Script(clock).queue(token_response("old", expires_in=3600))
    return credential_engine, script, script.run(credential_engine.acquire(RESOURCE))


def test_the_refresh_moment_itself_starts_a_refresh() -> None:
    clock = Clock()
    credential_engine, script, old = _cached(clock)
    clock.now = old.refresh_on
    script.queue(token_response("new"))

    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"


def test_the_back_off_ends_exactly_thirty_seconds_after_the_failure() -> None:
    clock = Clock()
    credential_engine, script, old = _cached(clock)
    clock.now = old.refresh_on + 1
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "old"

    clock.now += 29.5
    assert script.run(credential_engine.acquire(RESOURCE)).token == "old"
    assert len(script.sent) == 2
    clock.now += 0.5  # exactly 30 s after the failure
    script.queue(token_response("new"))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"


def test_a_refresh_failing_exactly_at_the_mandatory_moment_raises() -> None:
    clock = Clock()
    credential_engine, script, old = _cached(clock)
    clock.now = old.expires_on - 61
    script.send_takes = 1.0  # the failed attempt ends at expires_on - 60: the mandatory moment
    script.queue(error_response(500))

    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))


def test_a_waiter_takes_the_cached_token_only_before_the_mandatory_moment() -> None:
    clock = Clock()
    credential_engine, _, old = _cached(clock)

    assert credential_engine.still_valid("https://other.example.com") is None
    clock.now = old.expires_on - 61
    assert credential_engine.still_valid(RESOURCE) is old
    clock.now = old.expires_on - 60
    assert credential_engine.still_valid(RESOURCE) is None


def test_the_engine_serves_a_due_token_at_once_and_asks_for_a_refresh_beside_it() -> None:
    clock = Clock()
    credential_engine, script, old = _cached(clock)

    assert credential_engine.serve("https://other.example.com") == (None, False)  # nothing cached: request
    clock.now = old.refresh_on - 1
    assert credential_engine.serve(RESOURCE) == (old, False)  # not due
    clock.now = old.refresh_on
    assert credential_engine.serve(RESOURCE) == (old, True)  # due: served, refreshed beside the caller
    clock.now = old.expires_on - 61
    assert credential_engine.serve(RESOURCE) == (old, True)
    clock.now = old.expires_on - 60  # the mandatory moment: the caller waits for a request
    assert credential_engine.serve(RESOURCE) == (None, False)
    assert script.sent and len(script.sent) == 1  # deciding sends nothing


def test_after_a_failed_refresh_the_engine_serves_without_refreshing_until_the_back_off_ends() -> None:
    clock = Clock()
    credential_engine, script, old = _cached(clock)
    clock.now = old.refresh_on + 1
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)) is old  # the refresh beside the callers fails

    clock.now += 29.5
    assert credential_engine.serve(RESOURCE) == (old, False)
    clock.now += 0.5
    assert credential_engine.serve(RESOURCE) == (old, True)


def test_each_process_spreads_its_refresh_point_over_part_of_the_advisory_window() -> None:
    clock = Clock()
    draws = iter([0.0, 0.5, 0.999])
    credential_engine = engine(APP_SERVICE, clock, _random=lambda: next(draws))
    script = Script(clock).queue(*(token_response(f"t{n}", expires_in=3600) for n in range(3)))
    moments = []
    for _ in range(3):
        info = script.run(credential_engine.acquire(RESOURCE, claims="{}"))  # a new token each time
        entry = credential_engine.bucket[RESOURCE]
        assert info.refresh_on == int(clock.now) + 3300  # what the caller is told is the endpoint's moment
        moments.append(entry.refresh_on - info.refresh_on)

    assert moments == [0.0, 30.0, pytest.approx(59.94)]  # at most 60 s later (azure-core adds 0 to 60 s)
    clock.now = START + 3300 + 59
    assert credential_engine.serve(RESOURCE)[1] is False  # this process's point has not come yet
    clock.now += 1
    assert credential_engine.serve(RESOURCE)[1] is True


@pytest.mark.parametrize(("lifetime", "most"), [(20, 2.5), (200, 25.0), (86400, 60.0)])
def test_the_spread_never_reaches_the_mandatory_window(lifetime: int, most: float) -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, _random=lambda: 0.999999)
    script = Script(clock).queue(token_response("t", expires_in=lifetime))
    info = script.run(credential_engine.acquire(RESOURCE))
    entry = credential_engine.bucket[RESOURCE]

    assert info.refresh_on is not None
    assert entry.refresh_on - info.refresh_on == pytest.approx(most, abs=0.001)
    assert entry.refresh_on < entry.mandatory_at
    # half the advisory window is left for the refresh and a retry after a failure
    assert entry.mandatory_at - entry.refresh_on >= (entry.mandatory_at - info.refresh_on) / 2 - 0.001


# --------------------------------------------------------------------------------------- 429 and Retry-After


def test_a_429_retry_after_holds_every_request_to_that_endpoint_until_the_time_it_named() -> None:
    clock = Clock()
    first = engine(APP_SERVICE, clock, retry_total=0)
    other = engine(APP_SERVICE, clock, retry_total=0, client_id="someone-else")  # same endpoint
    script = Script(clock).queue(error_response(429, {"retry-after": "20"}))
    with pytest.raises(ManagedIdentityError):
        script.run(first.acquire(RESOURCE))

    clock.now += 5
    script.queue(token_response("t"))
    assert script.run(other.acquire(RESOURCE)).token == "t"

    assert script.sleeps == [15.0]  # nothing went out before the time the endpoint named
    assert first.throttled_until() == other.throttled_until() == START + 20


def test_while_an_endpoint_asks_to_wait_a_due_token_is_served_without_a_refresh() -> None:
    clock = Clock()
    credential_engine, script, old = _cached(clock)
    clock.now = old.refresh_on + 1
    script.queue(error_response(429, {"retry-after": "45"}))
    assert script.run(credential_engine.acquire(RESOURCE)) is old  # the refresh failed: served, back off 30 s

    clock.now += 40  # the back-off is over, the endpoint's wait is not
    assert credential_engine.serve(RESOURCE) == (old, False)
    assert script.run(credential_engine.acquire(RESOURCE)) is old
    assert len(script.sent) == 2
    clock.now += 5
    assert credential_engine.serve(RESOURCE) == (old, True)


def test_a_caller_that_cannot_be_served_waits_for_the_named_time_or_fails_without_sending() -> None:
    clock = Clock()
    patient = engine(APP_SERVICE, clock, retry_total=0)
    hurried = engine(APP_SERVICE, clock, retry_total=0, client_id="hurried", timeout=10)
    script = Script(clock).queue(error_response(429, {"retry-after": "30"}))
    with pytest.raises(ManagedIdentityError):
        script.run(patient.acquire(RESOURCE))

    error = failure(script, hurried.acquire(RESOURCE))
    check(error, "throttled", ManagedIdentitySource.APP_SERVICE)
    assert len(script.sent) == 1  # nothing sent: 30 s is past its 10 s deadline
    assert "30 s" in str(error)


def test_a_retry_after_is_remembered_for_at_most_five_minutes() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(error_response(429, {"retry-after": "86400"}))
    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))

    assert credential_engine.throttled_until() == START + 300


# ------------------------------------------------------------------------------------------------- cache keys


def test_the_default_client_id_from_the_environment_is_part_of_the_cache_key() -> None:
    clock = Clock()
    base = {"MSI_ENDPOINT": "http://127.0.0.1:9/msi/token", "MSI_SECRET": "ml-secret"}
    first = engine(dict(base, DEFAULT_IDENTITY_CLIENT_ID="AAAA"), clock, share_cache=True)
    same = engine(dict(base, DEFAULT_IDENTITY_CLIENT_ID="aaaa"), clock, share_cache=True)
    other = engine(dict(base, DEFAULT_IDENTITY_CLIENT_ID="bbbb"), clock, share_cache=True)
    none = engine(base, clock, share_cache=True)

    assert first.source is ManagedIdentitySource.MACHINE_LEARNING
    assert first.bucket is same.bucket
    assert len({id(first.bucket), id(other.bucket), id(none.bucket)}) == 3


def test_a_user_assigned_identity_ignores_the_default_client_id_in_the_cache_key() -> None:
    clock = Clock()
    base = {"MSI_ENDPOINT": "http://127.0.0.1:9/msi/token", "MSI_SECRET": "ml-secret"}
    first = engine(dict(base, DEFAULT_IDENTITY_CLIENT_ID="aaaa"), clock, share_cache=True, client_id="cccc")
    second = engine(dict(base, DEFAULT_IDENTITY_CLIENT_ID="bbbb"), clock, share_cache=True, client_id="cccc")

    assert first.bucket is second.bucket
