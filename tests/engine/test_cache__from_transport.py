"""Hand-off from tests/transport (the lead folds it into this folder's test_cache.py): what the engine's token
cache decides, seen through the credential: when a cached token is served, the advisory and mandatory refresh
windows (an injected clock), the process-wide cache shared by credentials of the same identity, token info no
caller can change, and memory that does not grow per call nor stay pinned by expired tokens. The emulator;
both faces (the ``face`` fixture) where the test takes it."""

from __future__ import annotations

import copy
import gc
import pickle
import tracemalloc
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential._engine import cache
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

from ..conftest import FIGURES
from ..transport.support import SCOPE, Clock, with_a_cached_token

# -------------------------------------------------------------------------------------------- refresh windows


def test_fresh_token_is_served_until_refresh_on(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock)

    info = credential.get_token_info(SCOPE)
    assert info.refresh_on == info.expires_on - 300  # 600 <= lifetime < 7200
    clock.now = info.refresh_on - 1
    credential.get_token(SCOPE)

    assert len(emulator.requests) == 1


def test_advisory_refresh_failure_serves_the_cached_token_and_backs_off_30_seconds(
    face: Any, emulator_factory: Any
) -> None:
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, face.credential, retry_total=0)
    emulator.script(Fault(500), Fault(500))

    clock.now = old.refresh_on + 1
    assert credential.get_token(SCOPE).token == old.token  # the refresh beside it fails
    credential.settle()
    assert len(emulator.requests) == 2
    clock.now += 29
    assert credential.get_token(SCOPE).token == old.token  # backing off: no request
    credential.settle()
    assert len(emulator.requests) == 2
    clock.now += 2
    assert credential.get_token(SCOPE).token == old.token  # next attempt fails too
    credential.settle()
    assert len(emulator.requests) == 3
    clock.now = old.expires_on - 61  # backing off until the last second before the mandatory window
    assert credential.get_token(SCOPE).token == old.token
    credential.settle()
    assert credential.get_token(SCOPE).token != old.token  # and then it recovers
    assert len(emulator.requests) == 4


def test_mandatory_window_waits_and_propagates_the_error(face: Any, emulator_factory: Any) -> None:
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, face.credential, retry_total=0)
    emulator.script(Fault(500))

    clock.now = old.expires_on - 59  # last minute: mandatory
    with pytest.raises(ManagedIdentityError):
        credential.get_token(SCOPE)
    fresh = credential.get_token(SCOPE)

    assert fresh.token != old.token
    assert len(emulator.requests) == 3


def test_short_lived_token_is_not_requested_on_every_call(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=120)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock)

    info = credential.get_token_info(SCOPE)
    for _ in range(59):
        clock.now += 1
        credential.get_token(SCOPE)

    assert info.refresh_on is not None and info.refresh_on - (info.expires_on - 120) == 60
    assert len(emulator.requests) == 1


def test_long_lived_token_refreshes_at_half_life(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=24 * 3600)
    credential = face.credential(emulator, _clock=Clock())

    info = credential.get_token_info(SCOPE)

    assert info.refresh_on == info.expires_on - 12 * 3600


# ----------------------------------------------------------------------------------------- process-wide cache


def test_credential_per_request_still_sends_one_request_per_resource(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")

    for _ in range(20):
        with ManagedIdentityCredential(_environ=emulator.environ) as credential:
            credential.get_token(SCOPE)
            credential.get_token("https://vault.azure.net/.default")

    assert len(emulator.requests) == 2


def test_a_caller_cannot_change_the_token_info_other_credentials_get(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("app_service")
    first = face.credential(emulator, share_cache=True)
    second = face.credential(emulator, share_cache=True)
    info = first.get_token_info(SCOPE)
    token = first.get_token(SCOPE)

    for name, value in [("token", "forged"), ("expires_on", 0), ("refresh_on", 0), ("token_type", "Basic")]:
        with pytest.raises(AttributeError, match="cannot be set"):
            setattr(info, name, value)
        with pytest.raises(AttributeError, match="cannot be deleted"):
            delattr(info, name)
        with pytest.raises(AttributeError):  # AccessToken is a NamedTuple: already immutable
            setattr(token, name if hasattr(token, name) else "token", value)

    again = second.get_token_info(SCOPE)
    assert isinstance(again, AccessTokenInfo)
    issued = emulator.issued_tokens()[0]
    unchanged = (
        again.token == issued and second.get_token(SCOPE).token == issued
    )  # no token in a failure's output
    assert unchanged
    assert (again.expires_on, again.token_type) == (token.expires_on, "Bearer")
    assert len(emulator.requests) == 1
    assert vars(again) == {
        "token": again.token,
        "expires_on": again.expires_on,
        "token_type": "Bearer",
        "refresh_on": again.refresh_on,
    }
    copied = copy.copy(again)
    assert vars(pickle.loads(pickle.dumps(again))) == vars(copied) == vars(again)


def test_different_identities_do_not_share_tokens(emulator_factory: Any) -> None:
    from msi_credential.emulator import UserAssignedIdentity

    identity = UserAssignedIdentity("c1c1c1c1-0000-0000-0000-000000000000", "o1o1o1o1-0000", "/r/1")
    emulator = emulator_factory("imds", identities=[identity])

    system = ManagedIdentityCredential(_environ=emulator.environ).get_token(SCOPE)
    user = ManagedIdentityCredential(
        _environ=emulator.environ, client_id=identity.client_id.upper()
    ).get_token(SCOPE)
    user_again = ManagedIdentityCredential(_environ=emulator.environ, client_id=identity.client_id).get_token(
        SCOPE
    )

    assert system.token != user.token
    assert user.token == user_again.token  # ids compare case-insensitively
    assert len(emulator.requests) == 2


def test_shared_cache_follows_the_client_id_taken_from_the_environment(emulator_factory: Any) -> None:
    from msi_credential.emulator import UserAssignedIdentity

    other = UserAssignedIdentity("0a0a0a0a-0000-0000-0000-000000000000", "0b0b0b0b-0000", "/r/x")
    emulator = emulator_factory("workload_identity", identities=[other])
    first = ManagedIdentityCredential(_environ=emulator.environ).get_token(SCOPE)
    second = ManagedIdentityCredential(
        _environ=dict(emulator.environ, AZURE_CLIENT_ID=other.client_id)
    ).get_token(SCOPE)

    assert decode_jwt(first.token)["appid"] != decode_jwt(second.token)["appid"] == other.client_id
    assert len(emulator.requests) == 2


# ----------------------------------------------------------------------------------------------------- memory


def test_a_million_cached_calls_do_not_grow_memory(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    get_token = credential.get_token
    get_token(SCOPE)
    for _ in range(1000):
        get_token(SCOPE)

    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(1_000_000):
            get_token(SCOPE)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()

    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    FIGURES.append(f"memory growth over 1,000,000 cached get_token calls (tracemalloc): {growth} bytes")
    assert growth < 64 * 1024  # tracemalloc's own snapshot bookkeeping; nothing per call
    assert len(emulator.requests) == 1


def test_expired_entries_of_many_resources_do_not_pin_memory(emulator_factory: Any) -> None:
    clock = Clock(1_900_000_000.0)
    emulator = emulator_factory("app_service", token_lifetime=600, clock=clock)
    credential = ManagedIdentityCredential(_environ=emulator.environ, _clock=clock)
    resources = 600
    credential.get_token("https://warm-up.example/.default")
    gc.collect()

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(resources):
            credential.get_token(f"https://resource-{index}.example/.default")
        emulator.clear()  # the emulator's records of what it issued are not the cache's
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        clock.now += 600 + cache.SHARED_SWEEP_INTERVAL  # every token has expired
        credential.get_token("https://one-more.example/.default")  # a store: the sweep runs
        emulator.clear()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    FIGURES.append(
        f"{resources} resources: cache grew {grown / 2**20:.2f} MiB while valid, "
        f"{kept / 2**20:.2f} MiB kept after they expired"
    )
    assert len(credential._bucket) == 2  # the last resource, by resource and by scope
    assert kept < grown / 4  # what stays is fixed (pools, buffers), not per resource


def test_buckets_no_credential_uses_go_once_their_tokens_expire(emulator_factory: Any) -> None:
    count = 200
    identities = [
        UserAssignedIdentity(f"client-{index}", f"object-{index}", f"/id/{index}") for index in range(count)
    ]
    clock = Clock(1_900_000_000.0)
    emulator = emulator_factory("app_service", identities=identities, token_lifetime=600, clock=clock)
    baseline = cache.shared_bucket_count()

    for index in range(count):
        ManagedIdentityCredential(
            _environ=emulator.environ, _clock=clock, client_id=f"client-{index}"
        ).get_token(SCOPE)
    gc.collect()
    while_valid = cache.shared_bucket_count() - baseline
    # a credential built per request still finds the token its predecessor got
    again = ManagedIdentityCredential(_environ=emulator.environ, _clock=clock, client_id="client-7")
    again.get_token(SCOPE)
    assert len(emulator.requests) == count
    del again

    clock.now += 600 + cache.SHARED_SWEEP_INTERVAL
    ManagedIdentityCredential(_environ=emulator.environ, _clock=clock).get_token(SCOPE)  # a store: the sweep
    gc.collect()
    after = cache.shared_bucket_count() - baseline

    FIGURES.append(
        f"{count} client ids: {while_valid} buckets while their tokens were valid, {after} after expiry"
    )
    assert while_valid == count
    assert after <= 1  # only the system-assigned one just used
