"""msi_credential/_engine/flow.py: the engine's flows (``Engine.acquire``, ``serve``, ``still_valid``) as a
credential drives them.

Most tests go through the scripted driver of tests/engine/scripted.py (no sockets, an injected clock; the mutation run
of docs/mutation.md runs them): the error contract of each refusal, unreachable endpoints and first contact, retries
and their log lines, the call's deadline, request details and client request ids, window edges and serving a cached
token after a failed refresh, 429 and Retry-After, the cache key and the machine cache's entry names, and the effects
on the opt-in machine cache (what is looked up and stored, and when). The last two sections run both faces against
the emulator: the x-ms-client-request-id that the flow decides per attempt and names in its errors, and what the flow
does across calls (a 429's Retry-After holds every credential of the endpoint; a failed refresh beside the callers is
logged without the token).

A comment above a test names the one-line change to the engine that it catches (issue 13).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import socket
from typing import Any, Optional, cast

import pytest
from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine import flow
from msi_credential._engine.effects import (
    KeyFileResult,
    MachineEntry,
    MachineFound,
    MachineLookup,
    TransportFailure,
)
from msi_credential.emulator import Emulator, Fault

from ..faces.support import STORAGE
from ..faces.support import failure as credential_failure
from ..transport.support import SCOPE, with_a_cached_token
from ..transport.support import Clock as NowClock
from .scripted import (
    APP_SERVICE,
    IMDS,
    START,
    Clock,
    MachineStore,
    MachineThrottle,
    Script,
    Send,
    Sleep,
    check_error,
    engine,
    error_response,
    failure,
    token_response,
    with_cached_token,
)
from .sources.support import DIRECTORY, MACHINE_LEARNING, SERVICE_FABRIC, WORKLOAD, shared

RESOURCE = "https://storage.azure.com"
OTHER_RESOURCE = "https://vault.azure.net"
CLOUD_SHELL = {"MSI_ENDPOINT": "http://127.0.0.1:9/oauth2/token"}


# ----------------------------------------------------------------------- unreachable endpoints and first contact


def test_a_local_endpoint_that_never_answers_is_a_failure_naming_the_variable_and_the_attempts() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=3)
    script = Script(clock).queue(*[TransportFailure("connect", "refused")] * 4)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, "endpoint_unreachable", ManagedIdentitySource.APP_SERVICE)
    assert "IDENTITY_ENDPOINT" in str(error) and "4 attempt(s)" in str(error) and "refused" in str(error)
    assert script.sleeps == [1.0, 2.0, 4.0]


def test_imds_that_never_answers_after_retries_is_unavailable() -> None:
    clock = Clock()
    credential_engine = engine(IMDS, clock, retry_total=1)
    script = Script(clock).queue(*[TransportFailure("read_timeout", "timed out")] * 2)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
    assert "2 attempt(s)" in str(error)


def test_first_contact_with_imds_in_a_chain_is_unavailable_at_the_first_failure(
    imds_on_loopback: None,
) -> None:
    clock = Clock()
    credential_engine = engine({}, clock)
    script = Script(clock).queue(TransportFailure("connect_timeout", "no answer"))

    error = failure(script, credential_engine.acquire(RESOURCE, in_chain=True))

    check_error(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
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

    check_error(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
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
        check_error(error, "imds_unreachable", ManagedIdentitySource.IMDS, unavailable=True)
        assert [request.connect_timeout for request in script.sent] == [1.0]
    else:
        assert script.run(credential_engine.acquire(RESOURCE, in_chain=True)).token
        assert [request.connect_timeout for request in script.sent] == [2.0, 2.0]
        assert script.sleeps == [1.0]


# change: IMDS retries after a first answer use the 1 s first-contact connect timeout instead of 2 s
def test_imds_retries_after_a_first_answer_use_a_two_second_connect_timeout(
    imds_on_loopback: None,
) -> None:
    clock = Clock()
    credential_engine = engine({}, clock)
    script = Script(clock).queue(error_response(503), error_response(503), token_response())

    script.run(credential_engine.acquire(RESOURCE, in_chain=True))
    script.queue(token_response("vault"))
    script.run(credential_engine.acquire("https://vault.azure.net", in_chain=True))

    assert [request.connect_timeout for request in script.sent] == [1.0, 2.0, 2.0, 2.0]


# change: retries after IMDS's first answer take the 2 s connect timeout even where connection_timeout= names another
def test_imds_retries_after_a_first_answer_keep_the_connection_timeout_keyword(
    imds_on_loopback: None,
) -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(503), token_response())

    script.run(engine({}, clock, connection_timeout=5).acquire(RESOURCE, in_chain=True))

    assert [request.connect_timeout for request in script.sent] == [5.0, 5.0]


# change: a request called without in_chain= is a chain's first contact (it fails fast instead of retrying)
def test_a_request_is_outside_a_chain_unless_told_otherwise(imds_on_loopback: None) -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect_timeout", "no answer"), token_response("t"))

    token: Any = script.run(cast(Any, engine({}, clock).request(RESOURCE)))

    assert token.token == "t"
    assert [request.connect_timeout for request in script.sent] == [2.0, 2.0]


def test_pod_identity_imds_is_never_a_first_contact() -> None:
    clock = Clock()
    credential_engine = engine(IMDS, clock)
    script = Script(clock).queue(TransportFailure("connect", "refused"), token_response())

    script.run(credential_engine.acquire(RESOURCE, in_chain=True))

    assert [request.connect_timeout for request in script.sent] == [2.0, 2.0]
    assert script.sleeps == [1.0]


def test_a_certificate_pin_mismatch_is_never_retried() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock)
    script = Script(clock).queue(TransportFailure("pin_mismatch", "sha1 differs"))

    check_error(
        failure(script, credential_engine.acquire(RESOURCE)),
        "thumbprint_mismatch",
        ManagedIdentitySource.APP_SERVICE,
    )
    assert script.sleeps == [] and len(script.sent) == 1


def test_the_unreachable_error_keeps_the_endpoint_secret_out() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect", "refused by proxy for header-secret"))

    error = failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))

    check_error(error, "endpoint_unreachable", ManagedIdentitySource.APP_SERVICE)
    assert "refused by proxy" in str(error) and "header-secret" not in str(error)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        pytest.param(
            "http://127.0.0.1:9/msi/token",
            "App Service managed identity endpoint at IDENTITY_ENDPOINT (http://127.0.0.1:9/msi/token) "
            "did not answer after 1 attempt(s): refused",
            id="with-a-port",
        ),
        pytest.param(
            "http://127.0.0.1/msi/token",
            "App Service managed identity endpoint at IDENTITY_ENDPOINT (http://127.0.0.1/msi/token) "
            "did not answer after 1 attempt(s): refused",
            id="without-a-port",  # shown without one
        ),
    ],
)
def test_an_unreachable_endpoint_is_named_by_source_variable_endpoint_and_attempts(
    endpoint: str, message: str
) -> None:
    clock = Clock()
    environ = dict(APP_SERVICE, IDENTITY_ENDPOINT=endpoint)
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, engine(environ, clock, retry_total=0).acquire(RESOURCE))

    assert error.error_code == "endpoint_unreachable"
    assert str(error).startswith(message)


# ----------------------------------------------------------------------------------------------- retries, logged


def _retry_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]


def test_a_transport_failure_retried_is_logged_with_the_scrubbed_detail_and_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock)
    script = Script(clock).queue(
        TransportFailure("connect", "refused by header-secret"), token_response("token-1")
    )

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        info = script.run(credential_engine.acquire(RESOURCE))

    assert isinstance(info, AccessTokenInfo) and info.token == "token-1"
    assert _retry_log(caplog) == ["App Service managed identity endpoint: refused by ***; retrying in 1.0 s"]


def test_an_http_answer_retried_is_logged_with_its_status_and_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    credential_engine = engine(IMDS, clock)
    script = Script(clock).queue(error_response(503, {"retry-after": "3"}), token_response("token-1"))

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        script.run(credential_engine.acquire(RESOURCE))

    assert _retry_log(caplog) == ["IMDS: HTTP 503; retrying in 3.0 s"]


# ------------------------------------------------------------------------------------------- the call's deadline


# change: the per-attempt budget ignores the time already spent (`remaining = deadline`)
def test_each_attempt_gets_what_is_left_of_the_call_deadline() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, _deadline=60)
    script = Script(clock, send_takes=5.0)
    script.queue(error_response(503), error_response(503), error_response(503), token_response())

    script.run(credential_engine.acquire(RESOURCE))

    # attempts take 5 s each, sleeps 1, 2, 4 s: 60, 60-6, 60-13, 60-22 (never below 1 s)
    assert [request.budget for request in script.sent] == [60.0, 54.0, 47.0, 38.0]


def test_an_attempt_started_at_the_deadline_gets_only_the_minimum_budget() -> None:
    """The deadline (``timeout=``) bounds the whole call: a retry that starts with nothing left gets 50 ms,
    not a second past the deadline, and no step of it (connect, read) more than that."""
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, _deadline=10, retry_total=1)
    script = Script(clock, send_takes=9.0).queue(error_response(503), token_response())

    script.run(credential_engine.acquire(RESOURCE))

    assert [request.budget for request in script.sent] == [10.0, 0.05]
    assert [request.read_timeout for request in script.sent] == [10.0, 0.05]


def test_a_wall_clock_step_during_a_call_does_not_stretch_its_deadline() -> None:
    """Deadlines run on the monotonic clock: the wall clock stepping back an hour mid-request (NTP, a resumed VM)
    neither lengthens the next attempt's budget nor allows retries past ``timeout=``."""
    monotonic = Clock()

    def wall() -> float:  # steps back an hour once the first attempt has taken its time
        return monotonic.now - (3600.0 if monotonic.now > START else 0.0)

    credential_engine = engine(APP_SERVICE, wall, _monotonic=monotonic, _deadline=10, retry_total=1)
    script = Script(monotonic, send_takes=9.0).queue(error_response(503), token_response())

    script.run(credential_engine.acquire(RESOURCE))

    assert [request.budget for request in script.sent] == [10.0, 0.05]


def test_the_connect_timeout_of_an_attempt_is_bounded_by_what_is_left_of_the_deadline() -> None:
    clock = Clock()
    script = Script(clock, send_takes=9.0).queue(error_response(503), token_response())

    script.run(engine(APP_SERVICE, clock, _deadline=10, retry_total=1).acquire(RESOURCE))

    assert [request.connect_timeout for request in script.sent] == [2.0, 0.05]


# change: an engine built without a monotonic clock, or without a random draw, gets none (instead of its wall clock,
# and no spread of the refresh point)
def test_an_engine_built_with_its_clock_alone_times_deadlines_on_it_and_spreads_no_refresh_point() -> None:
    clock = Clock()
    built = engine(APP_SERVICE, clock, _deadline=60)
    bare = flow.Engine(built.config, built.identity, built.options, clock)
    script = Script(clock, send_takes=4.0).queue(error_response(503), token_response())

    info = script.run(bare.acquire(RESOURCE))

    assert [request.budget for request in script.sent] == [60.0, 55.0]  # 4 s attempt, 1 s wait
    assert bare.bucket[RESOURCE].refresh_on == info.refresh_on


# ---------------------------------------------------------------------------------------------- unusable configs


def test_a_configuration_problem_is_raised_before_any_request() -> None:
    clock = Clock()
    credential_engine = engine(
        {"IDENTITY_ENDPOINT": "http://10.0.0.1/msi/token", "IDENTITY_HEADER": "h"}, clock
    )
    script = Script(clock)

    check_error(
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

    check_error(error, "user_assigned_not_supported", ManagedIdentitySource.CLOUD_SHELL)
    assert "object_id" in str(error)
    assert script.sent == []


# change: the refusal's message drops or alters the selectors the source takes ("its object id (object_id=)"), or
# names some where the source takes none
@pytest.mark.parametrize(
    ("environ", "keyword", "message"),
    [
        pytest.param(
            SERVICE_FABRIC,
            "client_id",
            "Service Fabric managed identity endpoint does not support a user-assigned identity selected by "
            "client_id; select it by its object id (object_id=) instead",
            id="service-fabric",
        ),
        pytest.param(
            MACHINE_LEARNING,
            "resource_id",
            "Azure Machine Learning managed identity endpoint does not support a user-assigned identity selected "
            "by resource_id; select it by its client id (client_id=) instead",
            id="machine-learning",
        ),
        pytest.param(
            CLOUD_SHELL,
            "object_id",
            "Cloud Shell managed identity endpoint does not support a user-assigned identity selected by object_id",
            id="cloud-shell-takes-none",
        ),
    ],
)
def test_a_refused_user_assigned_identity_is_told_which_selectors_the_source_takes(
    environ: dict[str, str], keyword: str, message: str
) -> None:
    clock = Clock()
    credential_engine = engine(environ, clock, **{keyword: "00000000-0000-0000-0000-000000000001"})

    error = failure(Script(clock), credential_engine.acquire(RESOURCE))

    assert error.error_code == "user_assigned_not_supported"
    assert str(error) == message


# ----------------------------------------------------------------------------------------------- request details


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


# -------------------------------------------------------------------------------------------------- window edges


def test_the_refresh_moment_itself_starts_a_refresh() -> None:
    clock = Clock()
    credential_engine, script, old = with_cached_token(clock)
    clock.now = old.refresh_on
    script.queue(token_response("new"))

    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"


def test_the_back_off_ends_exactly_thirty_seconds_after_the_failure() -> None:
    clock = Clock()
    credential_engine, script, old = with_cached_token(clock)
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
    credential_engine, script, old = with_cached_token(clock)
    clock.now = old.expires_on - 61
    script.send_takes = 1.0  # the failed attempt ends at expires_on - 60: the mandatory moment
    script.queue(error_response(500))

    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))


def test_a_waiter_takes_the_cached_token_only_before_the_mandatory_moment() -> None:
    clock = Clock()
    credential_engine, _, old = with_cached_token(clock)

    assert credential_engine.still_valid("https://other.example.com") is None
    clock.now = old.expires_on - 61
    assert credential_engine.still_valid(RESOURCE) is old
    clock.now = old.expires_on - 60
    assert credential_engine.still_valid(RESOURCE) is None


def test_the_engine_serves_a_due_token_at_once_and_asks_for_a_refresh_beside_it() -> None:
    clock = Clock()
    credential_engine, script, old = with_cached_token(clock)

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
    credential_engine, script, old = with_cached_token(clock)
    clock.now = old.refresh_on + 1
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)) is old  # the refresh beside the callers fails

    clock.now += 29.5
    assert credential_engine.serve(RESOURCE) == (old, False)
    clock.now += 0.5
    assert credential_engine.serve(RESOURCE) == (old, True)


# change: the advisory back-off also skips requests in the mandatory window (drop `now < entry.mandatory_at`)
def test_mandatory_window_requests_even_during_the_advisory_back_off() -> None:
    clock = Clock()
    credential_engine, script, old = with_cached_token(clock, lifetime=3600)
    assert old.refresh_on is not None
    clock.now = old.expires_on - 61  # advisory window, one second before the mandatory one
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "old"  # refresh failed: back off 30 s

    clock.now = old.expires_on - 40  # mandatory window, still inside the 30 s back-off
    script.queue(error_response(500))
    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))
    assert len(script.sent) == 3


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


# change: a refresh that fails is answered with the cached token whenever one exists (drop the `mandatory_at`
# check after the failure): then a refresh whose retries run past the expiry returns the expired token.
def test_a_refresh_failing_after_the_expiry_raises_rather_than_serving_the_expired_token() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=2)
    script = Script(clock).queue(token_response("old", expires_in=3600))
    old = script.run(credential_engine.acquire(RESOURCE))
    clock.now = old.expires_on - 62  # advisory: the cached token may be served if the refresh fails in time
    script.send_takes = 30.0  # each attempt takes 30 s: the third one fails after the expiry
    script.queue(error_response(503), error_response(503), error_response(503))

    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))
    assert clock.now > old.expires_on


# change: a claims request whose refresh fails returns the old, challenged token (drop `claims is None and`)
def test_a_failed_claims_refresh_raises_instead_of_returning_the_challenged_token() -> None:
    clock = Clock()
    credential_engine, script, _old = with_cached_token(clock, lifetime=3600)
    script.queue(error_response(500))

    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE, claims='{"access_token":{"nbf":{"value":"1"}}}'))
    assert len(script.sent) == 2


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


# ------------------------------------------------------------------------------------------- 429 and Retry-After


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
    credential_engine, script, old = with_cached_token(clock)
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
    check_error(error, "throttled", ManagedIdentitySource.APP_SERVICE)
    assert len(script.sent) == 1  # nothing sent: 30 s is past its 10 s deadline
    assert "30 s" in str(error)


def test_a_retry_after_is_remembered_for_at_most_five_minutes() -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(error_response(429, {"retry-after": "86400"}))
    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))

    assert credential_engine.throttled_until() == START + 300


# change: what is left of the endpoint's wait is not slept when it is a second or less, or the wait is logged
# without its source or seconds; or the request forgets it waited, and its next retry fails
def test_a_caller_arriving_near_the_named_time_waits_the_rest_logs_it_and_retries_as_usual(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(429, {"retry-after": "20"}))
    failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))
    clock.now += 19.5
    script.queue(error_response(503), token_response("t"))

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        assert script.run(
            engine(APP_SERVICE, clock, retry_total=1, client_id="other").acquire(RESOURCE)
        ).token

    assert script.sleeps == [0.5, 1.0]
    assert caplog.records[0].getMessage() == (
        "App Service managed identity endpoint: the endpoint asked to wait; waiting 0.5 s"
    )


# change: a named time that ends exactly at the call's deadline is refused as past it
def test_a_named_time_ending_exactly_at_the_deadline_is_waited_for() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(429, {"retry-after": "10"}))
    failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))
    script.queue(token_response("t"))

    assert (
        script.run(engine(APP_SERVICE, clock, client_id="other", timeout=10).acquire(RESOURCE)).token == "t"
    )
    assert script.sleeps == [10.0]


# change: a request that slept for its own 429's Retry-After waits again when the wall clock is still short of the
# named time (a clock step during the sleep), or loses track of the time it waited for
def test_a_request_that_slept_for_its_own_429_does_not_wait_for_it_twice() -> None:
    clock = Clock()
    running = engine(APP_SERVICE, clock, retry_total=1).acquire(RESOURCE)
    assert isinstance(next(running), Send)

    assert running.send(error_response(429, {"retry-after": "3"})) == Sleep(3.0)
    clock.now += 1.0  # the wall clock stepped back 2 s during the 3 s sleep
    assert isinstance(running.send(None), Send)


# change: a 429 without Retry-After fails to be read, one of 0 s holds the endpoint, one of 1 s does not, or an
# HTTP date is read against no time
@pytest.mark.parametrize(
    ("headers", "held_until"),
    [
        pytest.param({}, 0.0, id="none"),
        pytest.param({"retry-after": "0"}, 0.0, id="zero"),
        pytest.param({"retry-after": "1"}, START + 1, id="one-second"),
        pytest.param({"retry-after": "Tue, 14 Nov 2023 22:13:50 GMT"}, START + 30, id="http-date"),
    ],
)
def test_a_429_holds_the_endpoint_for_the_time_its_retry_after_names(
    headers: dict[str, str], held_until: float
) -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(error_response(429, headers))

    assert failure(script, credential_engine.acquire(RESOURCE)).status_code == 429
    assert credential_engine.throttled_until() == held_until


# change: a due token is still served without a refresh at the very time the endpoint named
def test_at_the_named_time_itself_a_due_token_is_refreshed() -> None:
    clock = Clock()
    credential_engine, script, old = with_cached_token(clock)
    assert old.refresh_on is not None
    clock.now = old.refresh_on + 1
    script.queue(error_response(429, {"retry-after": "45"}))
    assert script.run(credential_engine.acquire(RESOURCE)) is old

    clock.now += 45
    script.queue(token_response("new"))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "new"


# ---------------------------------------------------------------------------------------------------- cache keys


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


# change: client capabilities are left out of the cache key (tokens for different xms_cc share an entry)
def test_credentials_with_different_client_capabilities_do_not_share_cached_tokens() -> None:
    clock = Clock()
    plain = engine(APP_SERVICE, clock, share_cache=True)
    with_cp1 = engine(APP_SERVICE, clock, share_cache=True, client_capabilities=["cp1"])
    same_as_plain = engine(APP_SERVICE, clock, share_cache=True)
    script = Script(clock).queue(token_response("plain"), token_response("cp1"))

    assert script.run(plain.acquire(RESOURCE)).token == "plain"
    assert script.run(with_cp1.acquire(RESOURCE)).token == "cp1"
    assert script.run(same_as_plain.acquire(RESOURCE)).token == "plain"
    assert len(script.sent) == 2


def stored_name(environ: dict[str, str], resource: str = RESOURCE, **kwargs: Any) -> str:
    clock = Clock()
    script = Script(clock).queue(token_response("t"))
    script.run(shared(environ, clock, **kwargs).acquire(resource))
    return script.stores[0].name


def test_entry_names_are_the_same_for_the_same_credential_and_resource() -> None:
    assert stored_name(APP_SERVICE) == stored_name(APP_SERVICE)


def test_entry_names_differ_by_resource() -> None:
    assert stored_name(APP_SERVICE) != stored_name(APP_SERVICE, OTHER_RESOURCE)


def test_entry_names_differ_by_identity_and_capabilities() -> None:
    names = {
        stored_name(APP_SERVICE),
        stored_name(APP_SERVICE, client_id="client-a"),
        stored_name(APP_SERVICE, client_id="client-b"),
        stored_name(APP_SERVICE, client_capabilities=["cp1"]),
        stored_name(dict(APP_SERVICE, IDENTITY_ENDPOINT="http://127.0.0.1:10/msi/token")),
    }
    assert len(names) == 5


def test_entry_names_differ_by_the_endpoint_secret_and_carry_no_secret() -> None:
    one = stored_name(APP_SERVICE)
    other = stored_name(dict(APP_SERVICE, IDENTITY_HEADER="another-secret"))

    assert one != other
    assert "secret" not in one + other and re.fullmatch("[0-9a-f]{64}", one)


def test_a_token_of_another_identity_in_the_directory_is_not_served() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("for-a"), token_response("for-b"))
    script.run(shared(APP_SERVICE, clock, client_id="client-a").acquire(RESOURCE))

    assert script.run(shared(APP_SERVICE, clock, client_id="client-b").acquire(RESOURCE)).token == "for-b"


# -------------------------------------------------------------------------------------- the opt-in machine cache


def entry(
    token: str = "shared-token",
    *,
    expires_on: float = START + 3600,
    refresh_on: Optional[float] = None,
    mandatory_at: Optional[float] = None,
    token_type: str = "Bearer",
    info_refresh_on: Optional[int] = None,
) -> MachineEntry:
    return MachineEntry(
        token=token,
        expires_on=int(expires_on),
        refresh_on=expires_on - 1800 if refresh_on is None else refresh_on,
        mandatory_at=expires_on - 60 if mandatory_at is None else mandatory_at,
        token_type=token_type,
        info_refresh_on=info_refresh_on,
    )


def test_without_the_machine_cache_nothing_is_looked_up_or_stored() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("t"))

    assert script.run(engine(APP_SERVICE, clock).acquire(RESOURCE)).token == "t"

    assert script.lookups == [] and script.stores == []


def test_a_miss_looks_up_once_in_the_directory_at_the_current_time_then_requests_and_stores() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("fresh", expires_in=3600))

    info = script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))

    assert info.token == "fresh"
    [lookup] = script.lookups
    assert (lookup.directory, lookup.now, lookup.wait) == (DIRECTORY, START, 5.0)
    assert re.fullmatch("[0-9a-f]{64}", lookup.name)
    assert [type(effect) for effect in script.effects] == [MachineLookup, Send, MachineStore]
    [store] = script.stores
    assert (store.directory, store.name) == (DIRECTORY, lookup.name)
    assert store.now == START  # the engine's clock: the store sweeps entries expired by then


def test_the_stored_entry_carries_the_token_and_the_cache_windows_of_the_answer() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("fresh", expires_in=3600, token_type="PoP"))

    script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))

    # no refresh_in: the default refresh moment (five minutes before expiry); mandatory a minute before it
    assert script.stores[0].entry == MachineEntry(
        token="fresh",
        expires_on=int(START) + 3600,
        refresh_on=START + 3300,
        mandatory_at=START + 3600 - 60,
        token_type="PoP",
        info_refresh_on=int(START) + 3300,
    )


def test_the_stored_entry_keeps_the_refresh_moment_the_endpoint_gave() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("fresh", expires_in=200, refresh_in=100))

    script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))

    stored = script.stores[0].entry
    assert (stored.refresh_on, stored.mandatory_at, stored.info_refresh_on) == (
        START + 100,
        START + 200 - 50,
        int(START) + 100,
    )


def test_the_lookup_wait_is_the_configured_wait_bounded_by_half_the_call_timeout() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("a"), token_response("b"), token_response("c"))

    script.run(shared(APP_SERVICE, clock, timeout=4).acquire(RESOURCE))
    script.run(shared(APP_SERVICE, clock, _machine_cache_wait=1.5).acquire(OTHER_RESOURCE))
    script.run(shared(APP_SERVICE, clock, timeout=30, _machine_cache_wait=20).acquire("https://a.example"))

    assert [lookup.wait for lookup in script.lookups] == [2.0, 1.5, 15.0]


def test_a_fresh_entry_of_another_process_is_served_without_a_request() -> None:
    clock = Clock()
    script = Script(clock)
    first = shared(APP_SERVICE, clock)
    script.queue(token_response("written-by-one"))
    script.run(first.acquire(RESOURCE))

    clock.now += 10
    info = script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))

    assert info.token == "written-by-one" and len(script.sent) == 1
    assert [lookup.name for lookup in script.lookups] == [script.stores[0].name] * 2
    assert len(script.stores) == 1  # a hit writes nothing back


def test_a_hit_returns_the_entrys_token_expiry_type_and_refresh_moment() -> None:
    clock = Clock()
    found = entry(
        "hit",
        expires_on=START + 600,
        refresh_on=START + 300,
        token_type="PoP",
        info_refresh_on=int(START) + 300,
    )
    script = Script(clock).queue(MachineFound(found))

    info = script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))

    assert (info.token, info.expires_on, info.token_type, info.refresh_on) == (
        "hit",
        int(START) + 600,
        "PoP",
        int(START) + 300,
    )
    assert script.sent == [] and script.stores == []


def test_a_hit_is_kept_in_process_with_the_entrys_windows() -> None:
    clock = Clock()
    credential_engine = shared(APP_SERVICE, clock, retry_total=0)
    found = entry("hit", expires_on=START + 1000, refresh_on=START + 400, mandatory_at=START + 900)
    script = Script(clock).queue(MachineFound(found))
    script.run(credential_engine.acquire(RESOURCE))

    # before the entry's refresh moment: the in-process copy, by the resource and by its /.default scope
    clock.now = START + 399
    assert script.run(credential_engine.acquire(RESOURCE)).token == "hit"
    assert credential_engine.still_valid(RESOURCE + "/.default") is not None
    cached = credential_engine.bucket[RESOURCE]
    assert (cached.access_token.token, cached.access_token.expires_on) == ("hit", int(START) + 1000)
    assert len(script.lookups) == 1

    # from its refresh moment: looked up and requested again; a failure serves the copy until its mandatory moment
    clock.now = START + 400
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "hit"
    clock.now = START + 900
    script.queue(error_response(500))
    assert failure(script, credential_engine.acquire(RESOURCE)).error_code == "server_error"
    assert len(script.lookups) == 3


def test_where_each_token_came_from_is_logged_with_source_resource_and_expiry(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("requested"))

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))
        script.run(shared(APP_SERVICE, clock).acquire(RESOURCE))

    label = "App Service managed identity endpoint"
    assert [record.getMessage() for record in caplog.records] == [
        f"{label}: got a token for {RESOURCE}, expires at {int(START) + 3600}",
        f"{label}: token for {RESOURCE} from the machine cache",
    ]


def test_the_machine_cache_keeps_the_endpoints_refresh_moment_and_each_process_spreads_its_own() -> None:
    clock = Clock()
    writer = shared(APP_SERVICE, clock, _random=lambda: 0.5)
    reader = shared(APP_SERVICE, clock, _random=lambda: 0.25)  # another process
    script = Script(clock).queue(token_response("t", expires_in=3600))
    info = script.run(writer.acquire(RESOURCE))
    assert script.run(reader.acquire(RESOURCE)).token == "t"  # from the machine cache

    assert info.refresh_on is not None
    [stored] = script.machine.values()
    assert stored.refresh_on == info.refresh_on
    assert writer.bucket[RESOURCE].refresh_on == info.refresh_on + 30  # half of 60 s
    assert reader.bucket[RESOURCE].refresh_on == info.refresh_on + 15


def test_a_429_retry_after_is_noted_in_the_machine_cache_and_another_process_waits_for_its_time() -> None:
    clock = Clock()
    first = shared(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(error_response(429, {"retry-after": "20"}))
    failure(script, first.acquire(RESOURCE))
    assert script.throttles == {first.throttle_note: START + 20}

    flow.forget_answers()  # another process: nothing held in its own memory
    other = shared(APP_SERVICE, clock, client_id="other-identity")  # the same endpoint
    clock.now += 5
    script.queue(token_response("t"))

    assert script.run(other.acquire(RESOURCE)).token == "t"
    assert other.throttle_note == first.throttle_note
    assert script.sleeps == [15.0]  # it asked only at the time the endpoint had named


def due_and_noted(clock: Clock, *, note_ends_in: float) -> tuple[flow.Engine, Script, AccessTokenInfo]:
    """An engine with the machine cache whose token "old" is due (a second past its refresh moment), and another
    process's throttle note for the endpoint, ending ``note_ends_in`` seconds from then."""
    mine = shared(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(token_response("old", expires_in=3600))
    old = script.run(mine.acquire(RESOURCE))
    assert old.refresh_on is not None and mine.throttle_note is not None
    clock.now = old.refresh_on + 1
    script.throttles[mine.throttle_note] = clock.now + note_ends_in
    return mine, script, old


def test_a_process_whose_token_may_still_be_served_does_not_refresh_while_another_was_asked_to_wait() -> None:
    clock = Clock()
    mine, script, old = due_and_noted(clock, note_ends_in=99)

    assert script.run(mine.acquire(RESOURCE)) is old  # served: no request
    assert len(script.sent) == 1
    assert mine.serve(RESOURCE) == (old, False)  # held in this process's memory now too


def test_without_the_machine_cache_a_429_is_noted_nowhere_else() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(429, {"retry-after": "20"}))
    failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))

    assert script.throttles == {}
    assert not any(isinstance(effect, MachineThrottle) for effect in script.effects)


# change: the note goes to no directory, or its name loses the ".throttle" suffix or the text it hashes (processes
# of another version of the library, sharing the directory, would not find it)
def test_a_429_is_noted_in_the_directory_as_the_sha256_of_source_and_endpoint_with_a_throttle_suffix() -> (
    None
):
    clock = Clock()
    script = Script(clock).queue(error_response(429, {"retry-after": "20"}))

    failure(script, shared(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))

    named = json.dumps(
        ["throttle", ManagedIdentitySource.APP_SERVICE.value, APP_SERVICE["IDENTITY_ENDPOINT"]]
    )
    name = hashlib.sha256(named.encode()).hexdigest() + ".throttle"
    notes = [effect for effect in script.effects if isinstance(effect, MachineThrottle)]
    assert [(note.directory, note.name, note.until) for note in notes] == [(DIRECTORY, name, START + 20)]


# change: an earlier time noted by another process replaces the later one this process holds
def test_an_earlier_time_noted_by_another_process_does_not_shorten_the_hold() -> None:
    clock = Clock()
    credential_engine = shared(APP_SERVICE, clock, retry_total=0, timeout=30)
    script = Script(clock).queue(error_response(429, {"retry-after": "60"}))
    failure(script, credential_engine.acquire(RESOURCE))
    script.queue(MachineFound(None, throttled_until=START + 10))

    error = failure(script, credential_engine.acquire(OTHER_RESOURCE))

    check_error(error, "throttled", ManagedIdentitySource.APP_SERVICE)  # 60 s is past the 30 s deadline
    assert credential_engine.throttled_until() == START + 60


# change: at the very time another process's note ends, a due token is still served instead of refreshed
def test_at_the_time_another_process_noted_a_due_token_is_refreshed() -> None:
    clock = Clock()
    mine, script, _old = due_and_noted(clock, note_ends_in=0)  # another process's note ends now
    script.queue(token_response("new"))

    assert script.run(mine.acquire(RESOURCE)).token == "new"


def test_an_entry_at_its_refresh_moment_is_stale_and_a_new_token_replaces_it() -> None:
    clock = Clock()
    stale = entry("stale", expires_on=START + 600, refresh_on=START)
    script = Script(clock).queue(MachineFound(stale), token_response("new"))

    assert script.run(shared(APP_SERVICE, clock).acquire(RESOURCE)).token == "new"

    assert len(script.sent) == 1 and script.stores[0].entry.token == "new"


def test_an_entry_past_its_expiry_is_stale_even_before_its_refresh_moment() -> None:
    clock = Clock()
    odd = entry("expired", expires_on=START, refresh_on=START + 600, mandatory_at=START - 60)
    script = Script(clock).queue(MachineFound(odd), token_response("new"))

    assert script.run(shared(APP_SERVICE, clock).acquire(RESOURCE)).token == "new"


def test_an_entry_that_goes_stale_while_waiting_for_the_lock_is_not_served() -> None:
    clock = Clock()
    soon = entry("soon-stale", expires_on=START + 600, refresh_on=START + 2)
    script = Script(clock, lookup_takes=3).queue(MachineFound(soon), token_response("new"))

    assert script.run(shared(APP_SERVICE, clock).acquire(RESOURCE)).token == "new"


def test_an_entry_just_before_its_refresh_moment_is_served() -> None:
    clock = Clock()
    found = entry("hit", expires_on=START + 600, refresh_on=START + 1)
    script = Script(clock).queue(MachineFound(found))

    assert script.run(shared(APP_SERVICE, clock).acquire(RESOURCE)).token == "hit"


def test_a_token_cached_in_process_is_served_without_a_lookup() -> None:
    clock = Clock()
    credential_engine = shared(APP_SERVICE, clock)
    script = Script(clock).queue(token_response("t"))
    script.run(credential_engine.acquire(RESOURCE))

    assert script.run(credential_engine.acquire(RESOURCE)).token == "t"

    assert len(script.lookups) == 1


def test_a_claims_request_skips_the_lookup_and_stores_the_new_token() -> None:
    clock = Clock()
    script = Script(clock).queue(MachineFound(entry("challenged")), token_response("after-claims"))
    script.answers.pop(0)  # nothing may consume the entry: a claims request never looks up

    info = script.run(shared(APP_SERVICE, clock).acquire(RESOURCE, claims='{"access_token":{}}'))

    assert info.token == "after-claims"
    assert script.lookups == [] and [store.entry.token for store in script.stores] == ["after-claims"]


def test_a_failed_request_after_a_miss_stores_nothing() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(400))

    error = failure(script, shared(APP_SERVICE, clock).acquire(RESOURCE))

    assert error.error_code == "server_error"
    assert len(script.lookups) == 1 and script.stores == [] and script.machine == {}


# ----------------------------------------------------------- client request ids, both faces against the emulator


def entra_error(correlation_id: str) -> dict[str, Any]:
    return {
        "error": "invalid_client",
        "error_description": f"AADSTS700016: Application not found. Correlation ID: {correlation_id}",
        "error_codes": [700016],
        "correlation_id": correlation_id,
    }


def test_a_refusal_names_the_request_id_it_was_sent_with_next_to_the_correlation_id(
    face: Any, emulator_factory: Any
) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    emulator.script(Fault(400, body=entra_error("corr-77aa")))

    error = credential_failure(face, emulator)

    [request] = emulator.requests
    sent = request.headers["x-ms-client-request-id"]
    assert error.client_request_id == sent
    assert error.correlation_id == "corr-77aa"
    assert "correlation id corr-77aa" in error.message
    assert f"x-ms-client-request-id {sent}" in error.message
    assert sent in str(error)


def test_the_id_is_the_last_attempts_and_each_attempt_has_its_own(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    emulator.script(Fault(500), Fault(500), Fault(500))

    error = credential_failure(face, emulator, retry_total=2)

    ids = [request.headers["x-ms-client-request-id"] for request in emulator.requests]
    assert len(ids) == 3 and len(set(ids)) == 3
    assert error.client_request_id == ids[-1]


@pytest.mark.parametrize("source", ["imds", "app_service", "azure_arc", "machine_learning", "cloud_shell"])
def test_every_source_carries_it(face: Any, emulator_factory: Any, source: str) -> None:
    kwargs: dict[str, Any] = {}
    emulator: Emulator = emulator_factory(source, **kwargs)
    emulator.script(Fault(403, body={"error": "forbidden", "error_description": "no"}))

    error = credential_failure(face, emulator, retry_total=0)

    assert error.client_request_id == emulator.requests[-1].headers["x-ms-client-request-id"]


@pytest.mark.loopback  # a closed loopback port
def test_an_unreachable_endpoint_names_the_request_id_too(face: Any) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    environ = {"IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/token", "IDENTITY_HEADER": "h" * 8}

    with pytest.raises(ManagedIdentityError) as caught:
        face.credential(_environ=environ, retry_total=0).get_token(STORAGE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert caught.value.client_request_id
    assert caught.value.client_request_id in caught.value.message


def test_an_error_before_any_request_has_no_request_id(face: Any) -> None:
    environ = {"IDENTITY_ENDPOINT": "http://10.0.0.1/token", "IDENTITY_HEADER": "h" * 8}
    with pytest.raises(ManagedIdentityError) as caught:
        face.credential(_environ=environ).get_token(STORAGE)
    assert caught.value.error_code == "invalid_endpoint"
    assert caught.value.client_request_id is None
    assert "x-ms-client-request-id" not in caught.value.message


def test_request_id_keyword_is_sent_and_named(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    emulator.script(Fault(500))

    error = credential_failure(face, emulator, retry_total=0, request_id="support-case-42")

    assert emulator.requests[0].headers["x-ms-client-request-id"] == "support-case-42"
    assert error.client_request_id == "support-case-42"


def test_auto_request_id_false_sends_none_and_names_none(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    emulator.script(Fault(500))

    error = credential_failure(face, emulator, retry_total=0, auto_request_id=False)

    assert "x-ms-client-request-id" not in emulator.requests[0].headers
    assert error.client_request_id is None


def test_a_successful_request_carries_an_id(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("app_service")
    face.credential(emulator).get_token(STORAGE)
    assert emulator.requests[0].headers["x-ms-client-request-id"]


# ----------------------------------------------------------------- across calls, both faces against the emulator


def test_a_429_retry_after_holds_every_credential_of_the_endpoint_until_its_time(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "30"}))
    clock = NowClock()
    with pytest.raises(ManagedIdentityError):
        face.credential(emulator, _clock=clock, retry_total=0).get_token(SCOPE)

    hurried = face.credential(emulator, _clock=clock, timeout=10)  # another credential, the same endpoint
    with pytest.raises(ManagedIdentityError) as caught:
        hurried.get_token(SCOPE)
    clock.now += 10
    patient = face.credential(emulator, _clock=clock)
    token = patient.get_token(SCOPE)

    assert caught.value.error_code == "throttled"  # the wait is past its deadline: nothing sent
    assert token.token
    assert face.sleeps == [20.0]  # the patient one waited for the time the endpoint named, then asked
    assert len(emulator.requests) == 2


def test_a_failed_refresh_beside_the_callers_is_logged_without_the_token(
    face: Any, emulator_factory: Any, caplog: Any
) -> None:
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, face.credential, retry_total=0)
    emulator.script(Fault(500))

    clock.now = old.refresh_on + 1
    with caplog.at_level("INFO", logger="msi_credential"):
        credential.get_token(SCOPE)
        credential.settle()

    assert "refreshing the token for https://storage.azure.com failed (internal_server_error)" in caplog.text
    assert old.token not in caplog.text
