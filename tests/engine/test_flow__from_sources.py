"""Hand-off for test_flow.py of tests/engine (``_engine/flow.py``), through the scripted driver (tests/engine/scripted.py,
no sockets, an injected clock): client request ids, the time left handed to the transport, the cache windows and
serving a cached token after a failed refresh, the effects on the opt-in machine cache (what is looked up and stored,
and when; the entries' names), and what the transport failure messages show. From test_engine_rules.py and
test_engine_machine_and_proxy_rules.py (the sources helper, issue 27), written against the surviving mutants of
``flow.py`` (docs/mutation.md)."""

from __future__ import annotations

import logging
import re
from typing import Any, Optional

import pytest

from msi_credential import ManagedIdentitySource
from msi_credential._engine import flow
from msi_credential._engine.effects import KeyFileResult, MachineEntry, MachineFound, MachineLookup

from .scripted import (
    APP_SERVICE,
    START,
    Clock,
    MachineStore,
    MachineThrottle,
    Script,
    Send,
    TransportFailure,
    engine,
    error_response,
    token_response,
)
from .sources.support import DIRECTORY, RESOURCE, WORKLOAD, check, failure, shared

OTHER_RESOURCE = "https://vault.azure.net"


# ---------------------------------------------------------------------------------- client request ids


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


# ---------------------------------------------------------------------------------------- the deadline


def test_the_connect_timeout_of_an_attempt_is_bounded_by_what_is_left_of_the_deadline() -> None:
    clock = Clock()
    script = Script(clock, send_takes=9.0).queue(error_response(503), token_response())

    script.run(engine(APP_SERVICE, clock, _deadline=10, retry_total=1).acquire(RESOURCE))

    assert [request.connect_timeout for request in script.sent] == [2.0, 0.05]


# --------------------------------------------------------------------------------------- cache windows


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


# --------------------------------------------------------------------------- machine cache: the lookup


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


def test_a_process_whose_token_may_still_be_served_does_not_refresh_while_another_was_asked_to_wait() -> None:
    clock = Clock()
    mine = shared(APP_SERVICE, clock, retry_total=0)
    script = Script(clock).queue(token_response("old", expires_in=3600))
    old = script.run(mine.acquire(RESOURCE))
    assert old.refresh_on is not None and mine.throttle_note is not None
    script.throttles[mine.throttle_note] = START + 3400  # noted by another process

    clock.now = old.refresh_on + 1
    assert script.run(mine.acquire(RESOURCE)) is old  # served: no request
    assert len(script.sent) == 1
    assert mine.serve(RESOURCE) == (old, False)  # held in this process's memory now too


def test_without_the_machine_cache_a_429_is_noted_nowhere_else() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(429, {"retry-after": "20"}))
    failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))

    assert script.throttles == {}
    assert not any(isinstance(effect, MachineThrottle) for effect in script.effects)


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


# ---------------------------------------------------------------------------- machine cache: the names


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


# -------------------------------------------------------------------------- transport failure messages


def test_the_unreachable_error_keeps_the_endpoint_secret_out() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect", "refused by proxy for header-secret"))

    error = failure(script, engine(APP_SERVICE, clock, retry_total=0).acquire(RESOURCE))

    check(error, "endpoint_unreachable", ManagedIdentitySource.APP_SERVICE)
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
