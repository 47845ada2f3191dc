"""The engine's rules for the opt-in machine cache and the AKS token proxy CA, through the scripted driver
(tests/engine/scripted.py): what is looked up and stored and when, what CA each token proxy request carries, and what the
transport failure messages show. No sockets, no files, an injected clock.

Written against the surviving mutants of `flow.py` (docs/mutation.md); each test checks behaviour through
``Engine.acquire`` as a credential drives it, never a private helper.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from typing import Any, Optional

import pytest
import trustme

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine import flow
from msi_credential._engine.effects import (
    KeyFileResult,
    MachineEntry,
    MachineFound,
    MachineLookup,
    MachineStore,
    MachineThrottle,
    ReadAssertion,
    ReadProxyCA,
    Send,
    TransportFailure,
)
from msi_credential._engine.flow import Engine

from .engine.scripted import APP_SERVICE, IMDS, START, Clock, Script, engine, error_response, token_response

RESOURCE = "https://storage.azure.com"
OTHER_RESOURCE = "https://vault.azure.net"
DIRECTORY = "/run/msi-credential-test-cache"
TOKEN_FILE = "/var/run/secrets/azure/tokens/azure-identity-token"
CA_FILE = "/var/run/secrets/aks/ca.crt"
WORKLOAD = {
    "AZURE_FEDERATED_TOKEN_FILE": TOKEN_FILE,
    "AZURE_TENANT_ID": "tenant",
    "AZURE_CLIENT_ID": "client-a",
    "AZURE_AUTHORITY_HOST": "http://127.0.0.1:9",
}
PROXY = dict(WORKLOAD, AZURE_KUBERNETES_TOKEN_PROXY="https://127.0.0.1:9", AZURE_KUBERNETES_CA_FILE=CA_FILE)
SERVICE_FABRIC = {
    "IDENTITY_ENDPOINT": "https://127.0.0.1:9/metadata/identity/oauth2/token",
    "IDENTITY_HEADER": "sf-secret",
    "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
}
MACHINE = {"MSI_CREDENTIAL_MACHINE_CACHE": "1"}


def shared(environ: dict[str, str], clock: Clock, **kwargs: Any) -> Engine:
    """An engine with the machine cache on, in DIRECTORY."""
    return engine(dict(environ, **MACHINE), clock, _machine_cache_dir=DIRECTORY, **kwargs)


def failure(script: Script, flow: Any) -> ManagedIdentityError:
    with pytest.raises(ManagedIdentityError) as caught:
        script.run(flow)
    return caught.value


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


@cache
def ca_pem(number: int) -> str:
    """A PEM CA certificate (a different one per number)."""
    return trustme.CA().cert_pem.bytes().decode("ascii")


def ca(number: int = 1) -> KeyFileResult:
    return KeyFileResult(content=ca_pem(number))


ASSERTION = KeyFileResult(content="federated-assertion")


# ------------------------------------------------------------------------------------ machine cache: the lookup


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


@pytest.mark.parametrize(
    ("environ", "answers"),
    [
        (SERVICE_FABRIC, [token_response("sf")]),
        (WORKLOAD, [ASSERTION, token_response("wi")]),
    ],
    ids=["service-fabric", "workload-identity"],
)
def test_service_fabric_and_workload_identity_never_use_the_machine_cache(
    environ: dict[str, str], answers: list[Any]
) -> None:
    clock = Clock()
    script = Script(clock).queue(*answers)

    script.run(shared(environ, clock).acquire(RESOURCE))

    assert script.lookups == [] and script.stores == []


# ------------------------------------------------------------------------------------ machine cache: the names


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


# ------------------------------------------------------------------------------------ AKS token proxy: the CA


def proxy_engine(clock: Clock, environ: Optional[dict[str, str]] = None, **kwargs: Any) -> Engine:
    return engine(PROXY if environ is None else environ, clock, enable_azure_proxy=True, **kwargs)


def test_the_token_proxy_request_carries_the_ca_files_content_and_goes_direct() -> None:
    clock = Clock()
    environ = dict(PROXY, AZURE_KUBERNETES_SNI_NAME="proxy.example")
    script = Script(clock).queue(ASSERTION, ca(1), token_response("via-proxy"))

    assert script.run(proxy_engine(clock, environ).acquire(RESOURCE)).token == "via-proxy"

    assert [type(effect) for effect in script.effects] == [ReadAssertion, ReadProxyCA, Send]
    assert script.reads == [TOKEN_FILE, CA_FILE]
    [request] = script.sent
    assert request.tls_ca == ca_pem(1) and request.token_proxy is True and request.use_proxies is False
    assert request.tls_server_name == "proxy.example"
    assert request.url.startswith("https://127.0.0.1:9/")


def test_without_a_server_name_the_token_proxy_request_names_none() -> None:
    clock = Clock()
    script = Script(clock).queue(ASSERTION, ca(1), token_response("t"))

    script.run(proxy_engine(clock).acquire(RESOURCE))

    assert script.sent[0].tls_server_name is None


def test_the_ca_data_variable_is_carried_as_is_without_reading_a_file() -> None:
    clock = Clock()
    environ = {key: value for key, value in PROXY.items() if key != "AZURE_KUBERNETES_CA_FILE"}
    environ["AZURE_KUBERNETES_CA_DATA"] = ca_pem(2)
    script = Script(clock).queue(ASSERTION, token_response("t"))

    script.run(proxy_engine(clock, environ).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE]
    assert script.sent[0].tls_ca == ca_pem(2).strip() and script.sent[0].token_proxy is True


def test_without_a_ca_variable_the_token_proxy_is_checked_against_the_system_cas() -> None:
    clock = Clock()
    environ = {key: value for key, value in PROXY.items() if key != "AZURE_KUBERNETES_CA_FILE"}
    script = Script(clock).queue(ASSERTION, token_response("t"))

    script.run(proxy_engine(clock, environ).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE]
    assert script.sent[0].tls_ca is None and script.sent[0].token_proxy is True


def test_without_the_token_proxy_the_request_is_an_ordinary_one() -> None:
    clock = Clock()
    script = Script(clock).queue(ASSERTION, token_response("t"))

    # enable_azure_proxy not given: the variables are ignored
    script.run(engine(PROXY, clock).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE]
    request = script.sent[0]
    assert request.token_proxy is False and request.tls_ca is None and request.use_proxies is True


def test_the_ca_file_is_read_for_every_attempt_and_a_rotated_ca_is_used_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    script = Script(clock).queue(ASSERTION, ca(1), error_response(503), ASSERTION, ca(2), token_response("t"))

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        script.run(proxy_engine(clock).acquire(RESOURCE))

    assert script.reads == [TOKEN_FILE, CA_FILE, TOKEN_FILE, CA_FILE]
    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(2)]
    changed = [record.getMessage() for record in caplog.records if "CA_FILE changed" in record.getMessage()]
    assert changed == ["Microsoft Entra token endpoint: AZURE_KUBERNETES_CA_FILE changed; using the new CA"]


def test_the_same_ca_read_again_is_carried_again_without_a_change_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    script = Script(clock).queue(ASSERTION, ca(1), error_response(503), ASSERTION, ca(1), token_response("t"))

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        script.run(proxy_engine(clock).acquire(RESOURCE))

    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(1)]
    assert not [record for record in caplog.records if "AZURE_KUBERNETES_CA_FILE" in record.getMessage()]


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
    script = Script(clock).queue(ASSERTION, read)

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
    script = Script(clock).queue(ASSERTION, ca(1), error_response(503), ASSERTION, read, token_response("t"))

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
    script = Script(clock).queue(ASSERTION, ca(1), token_response("one", expires_in=600))
    script.run(credential_engine.acquire(RESOURCE))

    script.queue(ASSERTION, KeyFileResult(content=""), token_response("two"))
    assert script.run(credential_engine.acquire(OTHER_RESOURCE)).token == "two"

    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(1)]


def test_a_good_ca_after_an_unusable_one_is_used() -> None:
    clock = Clock()
    credential_engine = proxy_engine(clock)
    script = Script(clock).queue(ASSERTION, ca(1), token_response("one"))
    script.run(credential_engine.acquire(RESOURCE))
    script.queue(ASSERTION, KeyFileResult(content=""), token_response("two"))
    script.run(credential_engine.acquire(OTHER_RESOURCE))

    script.queue(ASSERTION, ca(2), token_response("three"))
    script.run(credential_engine.acquire("https://a.example"))

    assert [request.tls_ca for request in script.sent] == [ca_pem(1), ca_pem(1), ca_pem(2)]


# ------------------------------------------------------------------------------------ transport failure messages


def test_an_unreachable_token_proxy_is_named_with_its_variable_and_endpoint() -> None:
    clock = Clock()
    script = Script(clock).queue(
        ASSERTION,
        ca(1),
        TransportFailure("connect", "refused"),
        ASSERTION,
        ca(1),
        TransportFailure("connect", "refused"),
    )

    error = failure(script, proxy_engine(clock, retry_total=1).acquire(RESOURCE))

    assert error.error_code == "endpoint_unreachable" and not isinstance(error, CredentialUnavailableError)
    assert str(error).startswith(
        "AKS token proxy at AZURE_KUBERNETES_TOKEN_PROXY (https://127.0.0.1:9/tenant/oauth2/v2.0/token) "
        "did not answer after 2 attempt(s): refused"
    )


def test_an_unreachable_endpoint_is_named_by_source_variable_endpoint_and_attempts() -> None:
    clock = Clock()
    environ = dict(APP_SERVICE, IDENTITY_ENDPOINT="http://127.0.0.1:9/msi/token")
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, engine(environ, clock, retry_total=0).acquire(RESOURCE))

    assert error.error_code == "endpoint_unreachable"
    assert str(error).startswith(
        "App Service managed identity endpoint at IDENTITY_ENDPOINT (http://127.0.0.1:9/msi/token) "
        "did not answer after 1 attempt(s): refused"
    )


def test_an_endpoint_without_a_port_is_shown_without_one() -> None:
    clock = Clock()
    environ = dict(APP_SERVICE, IDENTITY_ENDPOINT="http://127.0.0.1/msi/token")
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, engine(environ, clock, retry_total=0).acquire(RESOURCE))

    assert "at IDENTITY_ENDPOINT (http://127.0.0.1/msi/token) did not answer" in str(error)


def test_the_first_imds_contact_failure_names_the_endpoint_and_the_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", "http://127.0.0.1:9")
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect_timeout", "timed out"))

    error = failure(script, engine({}, clock).acquire(RESOURCE, in_chain=True))

    assert isinstance(error, CredentialUnavailableError) and error.error_code == "imds_unreachable"
    assert str(error).startswith(
        "IMDS did not answer at http://127.0.0.1:9/metadata/identity/oauth2/token (timed out); "
        "managed identity is not available here"
    )
    assert len(script.sent) == 1


def test_a_pod_identity_imds_that_never_answers_is_unavailable_naming_its_variable() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, engine(IMDS, clock, retry_total=0).acquire(RESOURCE))

    assert isinstance(error, CredentialUnavailableError) and error.error_code == "imds_unreachable"
    assert str(error).startswith(
        "IMDS at AZURE_POD_IDENTITY_AUTHORITY_HOST (http://127.0.0.1:9/metadata/identity/oauth2/token) "
        "did not answer after 1 attempt(s): refused"
    )


def test_a_certificate_pin_mismatch_says_nothing_was_sent() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("pin_mismatch", "sha1 differs"))

    error = failure(script, engine(SERVICE_FABRIC, clock).acquire(RESOURCE))

    assert error.error_code == "thumbprint_mismatch" and len(script.sent) == 1
    assert str(error).startswith(
        "Service Fabric managed identity endpoint: the server certificate does not match "
        "IDENTITY_SERVER_THUMBPRINT; nothing was sent"
    )


def test_the_connect_timeout_of_an_attempt_is_bounded_by_what_is_left_of_the_deadline() -> None:
    clock = Clock()
    script = Script(clock, send_takes=9.0).queue(error_response(503), token_response())

    script.run(engine(APP_SERVICE, clock, _deadline=10, retry_total=1).acquire(RESOURCE))

    assert [request.connect_timeout for request in script.sent] == [2.0, 0.05]
