"""Behaviours that a one-line change to the engine used to break without any test failing (issue 13).

Each test names the behaviour; the comment above it names the change that it catches. They drive the sans-I/O
engine through the scripted driver of tests/engine/scripted.py (no sockets, injected clock), so they also serve the
mutation-testing run (see docs/mutation.md).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentityError
from msi_credential._engine import cache
from msi_credential._engine.effects import KeyFileResult, Response, TransportFailure
from msi_credential._engine.expiry import token_times

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
SCOPE = RESOURCE + "/.default"


# ------------------------------------------------------------------------------------ refresh windows, expiry


def _cached_then_failing(clock: Clock, lifetime: int) -> tuple[Any, Script, AccessTokenInfo]:
    credential_engine = engine(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(token_response("old", expires_in=lifetime))
    old = script.run(credential_engine.acquire(RESOURCE))
    return credential_engine, script, old


# change: the advisory back-off also skips requests in the mandatory window (drop `now < entry.mandatory_at`)
def test_mandatory_window_requests_even_during_the_advisory_back_off() -> None:
    clock = Clock()
    credential_engine, script, old = _cached_then_failing(clock, 3600)
    assert old.refresh_on is not None
    clock.now = old.expires_on - 61  # advisory window, one second before the mandatory one
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "old"  # refresh failed: back off 30 s

    clock.now = old.expires_on - 40  # mandatory window, still inside the 30 s back-off
    script.queue(error_response(500))
    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE))
    assert len(script.sent) == 3


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
    credential_engine, script, _old = _cached_then_failing(clock, 3600)
    script.queue(error_response(500))

    with pytest.raises(ManagedIdentityError):
        script.run(credential_engine.acquire(RESOURCE, claims='{"access_token":{"nbf":{"value":"1"}}}'))
    assert len(script.sent) == 2


# change: the mandatory margin min(60 s, L/4) becomes L/2 (or anything else)
@pytest.mark.parametrize(("lifetime", "margin"), [(120, 30), (200, 50), (3600, 60), (86400, 60)])
def test_mandatory_window_is_the_last_quarter_of_the_lifetime_at_most_a_minute(
    lifetime: int, margin: int
) -> None:
    clock = Clock()
    credential_engine, script, old = _cached_then_failing(clock, lifetime)
    assert old.refresh_on is not None and old.refresh_on < old.expires_on - margin

    # one second before the mandatory window: a failed refresh still serves the cached token
    clock.now = old.expires_on - margin - 1
    script.queue(error_response(500))
    assert script.run(credential_engine.acquire(RESOURCE)).token == "old"
    # at the mandatory moment (after the 30 s back-off): a failed refresh raises
    clock.now = max(old.expires_on - margin, clock.now + cache.ADVISORY_RETRY_DELAY)
    if clock.now < old.expires_on:
        script.queue(error_response(500))
        with pytest.raises(ManagedIdentityError):
            script.run(credential_engine.acquire(RESOURCE))
    entry = credential_engine.bucket[RESOURCE]
    assert entry.mandatory_at == old.expires_on - margin


# change: `refresh_in` equal to the lifetime is accepted (`<` becomes `<=`)
def test_refresh_in_equal_to_the_lifetime_is_ignored() -> None:
    expires_on, refresh_on = token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=3600)

    assert expires_on == 4600
    assert refresh_on == 4600 - 300  # the default rule, not the expiry itself


def test_refresh_in_just_under_the_lifetime_is_taken() -> None:
    _, refresh_on = token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=3599)

    assert refresh_on == 1000 + 3599


# --------------------------------------------------------------------------------------------------- cache keys


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


# change: the `<resource>/.default` key is no longer stored, so every hit normalises the scope again
def test_a_cached_scope_hit_takes_the_hot_path_without_normalising_the_scope(
    face: Any, emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msi_credential import _setup

    emulator = emulator_factory("imds")
    credential = face.credential(emulator)
    first = credential.get_token_info(SCOPE)

    def refuse(scopes: tuple[str, ...]) -> str:
        raise AssertionError(f"the cache hit for {scopes} normalised its scope")

    monkeypatch.setattr(_setup, "resource_from_scopes", refuse)
    assert credential.get_token(SCOPE).token == first.token
    assert credential.get_token_info(SCOPE).token == first.token
    assert credential.get_token(RESOURCE).token == first.token
    assert len(emulator.requests) == 1


# ------------------------------------------------------------------------------------------------------- IMDS


# change: IMDS retries after a first answer use the 1 s first-contact connect timeout instead of 2 s
def test_imds_retries_after_a_first_answer_use_a_two_second_connect_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", "http://127.0.0.1:9")
    clock = Clock()
    credential_engine = engine({}, clock)
    script = Script(clock).queue(error_response(503), error_response(503), token_response())

    script.run(credential_engine.acquire(RESOURCE, in_chain=True))
    script.queue(token_response("vault"))
    script.run(credential_engine.acquire("https://vault.azure.net", in_chain=True))

    assert [request.connect_timeout for request in script.sent] == [1.0, 2.0, 2.0, 2.0]


def test_pod_identity_imds_is_never_a_first_contact() -> None:
    clock = Clock()
    credential_engine = engine(IMDS, clock)
    script = Script(clock).queue(TransportFailure("connect", "refused"), token_response())

    script.run(credential_engine.acquire(RESOURCE, in_chain=True))

    assert [request.connect_timeout for request in script.sent] == [2.0, 2.0]
    assert script.sleeps == [1.0]


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


# ---------------------------------------------------------------------------------------------------- Azure Arc


def _arc_challenge(directory: str) -> Response:
    return Response(401, {"www-authenticate": f"Basic realm={directory}/agent.key"}, b"")


# change: Arc's echo accepted only under `msi_res_id`, not `mi_res_id`
@pytest.mark.parametrize("echo_name", ["msi_res_id", "mi_res_id"])
def test_arc_accepts_the_resource_id_echoed_under_either_name(echo_name: str, tmp_path: Any) -> None:
    clock = Clock()
    resource_id = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"
    )
    credential_engine = engine(
        ARC, clock, resource_id=resource_id, _platform="linux", _arc_key_directory=str(tmp_path)
    )
    script = Script(clock).queue(
        _arc_challenge(str(tmp_path)),
        KeyFileResult(content="arc-secret"),
        token_response("arc", **{echo_name: resource_id.upper()}),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent.key"]
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"


def test_arc_refuses_an_answer_that_echoes_another_resource_id(tmp_path: Any) -> None:
    clock = Clock()
    credential_engine = engine(
        ARC, clock, resource_id="/r/wanted", _platform="linux", _arc_key_directory=str(tmp_path)
    )
    script = Script(clock).queue(
        _arc_challenge(str(tmp_path)),
        KeyFileResult(content="arc-secret"),
        token_response("arc", mi_res_id="/r/other", msi_res_id="/r/other"),
    )

    with pytest.raises(ManagedIdentityError) as caught:
        script.run(credential_engine.acquire(RESOURCE))
    assert caught.value.error_code == "arc_identity_not_confirmed"


# change: the Arc key file is read before its size is checked
@pytest.mark.parametrize("size", [0, 4097, 1 << 20])
def test_arc_key_file_of_a_wrong_size_is_refused_without_being_opened(
    size: int, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msi_credential._transport import files

    path = tmp_path / "agent.key"
    path.write_bytes(b"k" * size)
    opened: list[str] = []
    real_open = files.os.open

    def spy_open(name: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", spy_open)
    result = files.read_key_file(str(path))

    assert result.error is not None and result.error[0] == "arc_invalid_key_file"
    assert opened == []


def test_arc_key_file_of_the_largest_size_is_read(tmp_path: Any) -> None:
    from msi_credential._transport import files

    path = tmp_path / "agent.key"
    path.write_bytes(b"k" * 4096)

    assert files.read_key_file(str(path)).content == "k" * 4096


# --------------------------------------------------------------------------------------------- single-flight


def _failing_leader(bucket: cache.Bucket, waiters: int) -> tuple[list[object], int]:
    """``waiters + 1`` threads miss the cache together; the leader's request fails once every waiter waits."""
    from msi_credential._transport.sync import single_flight

    all_waiting = threading.Event()
    leader_requesting = threading.Event()
    lock = threading.Lock()
    waiting = 0
    requests = 0
    outcomes: list[object] = []

    def still_valid() -> None:
        nonlocal waiting
        with lock:
            waiting += 1
            if waiting == waiters:
                all_waiting.set()

    def request() -> AccessTokenInfo:
        nonlocal requests
        with lock:
            requests += 1
        if requests == 1:
            leader_requesting.set()
            assert all_waiting.wait(30)
            raise ManagedIdentityError("leader failed", error_code="forbidden")
        return AccessTokenInfo("re-requested", 0)

    def work() -> None:
        try:
            outcomes.append(single_flight(bucket, RESOURCE, request, still_valid))  # type: ignore[arg-type]
        except ManagedIdentityError as error:
            outcomes.append(error.error_code)

    leader = threading.Thread(target=work)
    leader.start()
    assert leader_requesting.wait(30)  # the leader has registered its flight and is sending
    threads = [threading.Thread(target=work) for _ in range(waiters)]
    for thread in threads:
        thread.start()
    for thread in [leader, *threads]:
        thread.join(30)
    return outcomes, requests


# change: single-flight waiters re-request instead of receiving the leader's error
def test_threads_waiting_on_a_failed_flight_receive_its_error_and_send_nothing() -> None:
    outcomes, requests = _failing_leader(cache.Bucket(), waiters=15)

    assert outcomes == ["forbidden"] * 16
    assert requests == 1


async def test_tasks_waiting_on_a_failed_flight_receive_its_error_and_send_nothing() -> None:
    from msi_credential._transport.aio import single_flight

    bucket = cache.Bucket()
    release = asyncio.Event()
    requests = 0

    async def request() -> AccessTokenInfo:
        nonlocal requests
        requests += 1
        if requests == 1:
            await release.wait()
            raise ManagedIdentityError("leader failed", error_code="forbidden")
        return AccessTokenInfo("re-requested", 0)

    calls = [asyncio.ensure_future(single_flight(bucket, RESOURCE, request, lambda: None)) for _ in range(16)]
    await asyncio.sleep(0)  # every task joins the flight
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert [getattr(o, "error_code", o) for o in outcomes] == ["forbidden"] * 16
    assert requests == 1
