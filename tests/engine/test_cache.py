"""msi_credential/_engine/cache.py: the hit, cache entries and their mandatory window, the refresh point's
spread, storing, buckets and their sweeps.

Mostly the cache's own functions, socket-free (the mutation run of docs/mutation.md runs them); the windows and
the spread through the scripted driver of tests/engine/scripted.py; the cached-scope hot path through both faces
(the ``face`` fixture and the IMDS emulator). The last three sections go through the credential against the
emulator (both faces where a test takes the ``face`` fixture, an injected clock): when a cached token is served and
the advisory and mandatory refresh windows; the process-wide cache that one identity's credentials share, errors
that are not cached and token info no caller can change; memory that does not grow per call nor stay pinned by
expired tokens. A comment above a test names the one-line change that it catches (issue 13).
"""

from __future__ import annotations

import copy
import gc
import pickle
import sys
import threading
import tracemalloc
import weakref
from collections.abc import Iterator
from typing import Any, Optional

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential, ManagedIdentityError
from msi_credential._engine import cache
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

from ..conftest import FIGURES
from ..faces.support import STORAGE
from ..transport.support import Clock as NowClock
from ..transport.support import with_a_cached_token
from .scripted import (
    APP_SERVICE,
    START,
    Clock,
    Script,
    engine,
    error_response,
    token_response,
    with_cached_token,
)

RESOURCE = "https://storage.azure.com"
SCOPE = RESOURCE + "/.default"


# ------------------------------------------------------------------------------------------------------- the hit


def _entry(expires_on: int, refresh_on: Optional[int] = None) -> cache.CacheEntry:
    return cache.CacheEntry.create(AccessTokenInfo("t", expires_on, refresh_on=refresh_on), start=0.0)


class _Clock:
    """A clock that counts its reads (the hit reads it only when it has an entry to judge)."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_a_hit_is_the_entry_for_the_one_scope_until_its_refresh_time() -> None:
    bucket = cache.Bucket()
    entry = _entry(5000, refresh_on=3000)
    bucket["https://r/.default"] = entry
    clock = _Clock(2999.5)
    hit = cache.hit_reader(bucket, clock)

    assert hit(("https://r/.default",)) is entry
    clock.now = 3000.0  # due for refresh: the slow path decides
    assert hit(("https://r/.default",)) is None
    assert clock.reads == 2


def test_a_hit_reads_the_bucket_as_it_is_now() -> None:
    bucket = cache.Bucket()
    hit = cache.hit_reader(bucket, _Clock(0.0))
    assert hit(("https://r/.default",)) is None
    entry = _entry(5000)
    cache.store(bucket, "https://r", entry, now=0.0)
    assert hit(("https://r/.default",)) is entry
    assert hit(("https://r",)) is entry


@pytest.mark.parametrize(
    "scopes", [(), ("https://r/.default", "https://r/.default"), (["https://r"],), ({},)]
)
def test_no_hit_for_other_than_one_hashable_scope(scopes: tuple[Any, ...]) -> None:
    bucket = cache.Bucket()
    bucket["https://r/.default"] = _entry(5000)
    clock = _Clock(0.0)
    assert cache.hit_reader(bucket, clock)(scopes) is None
    assert clock.reads == 0


def test_a_missing_scope_is_no_hit_without_reading_the_clock() -> None:
    clock = _Clock(0.0)
    assert cache.hit_reader(cache.Bucket(), clock)(("https://other/.default",)) is None
    assert clock.reads == 0


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


# change: the engine's hit reader is built without its clock (`hit_reader(self.bucket, None)`)
def test_an_engines_cache_hit_reads_the_engines_own_clock() -> None:
    clock = Clock()  # 2023, on the scripted driver's clock: by the wall clock this token has long expired
    credential_engine, _, first = with_cached_token(clock)

    entry = credential_engine.hit((SCOPE,))
    assert entry is not None and entry.info.token == first.token == "old"

    clock.now = entry.refresh_on  # due for a refresh on the engine's clock: no longer a hit
    assert credential_engine.hit((SCOPE,)) is None


# ------------------------------------------------------------------- entries: refresh point and mandatory window


def test_a_cache_entry_without_refresh_on_refreshes_at_expiry_and_keeps_the_access_token() -> None:
    entry = cache.CacheEntry.create(AccessTokenInfo("t", 5000), start=1000.0)
    assert entry.refresh_on == 5000.0
    assert entry.access_token == AccessToken("t", 5000)
    assert entry.mandatory_at == 5000 - 60


def test_the_mandatory_window_of_a_sub_second_token_is_a_quarter_of_its_lifetime() -> None:
    entry = cache.CacheEntry.create(AccessTokenInfo("t", 1001), start=1000.5)
    assert entry.mandatory_at == 1001 - 0.125


def test_the_mandatory_window_of_an_already_expired_token_is_empty() -> None:
    entry = cache.CacheEntry.create(AccessTokenInfo("t", 1000), start=2000.0)
    assert entry.mandatory_at == 1000


# change: the mandatory margin min(60 s, L/4) becomes L/2 (or anything else)
@pytest.mark.parametrize(("lifetime", "margin"), [(120, 30), (200, 50), (3600, 60), (86400, 60)])
def test_mandatory_window_is_the_last_quarter_of_the_lifetime_at_most_a_minute(
    lifetime: int, margin: int
) -> None:
    clock = Clock()
    credential_engine, script, old = with_cached_token(clock, lifetime=lifetime)
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


# change: a window of up to one second is not spread (`window <= 1`), or a fraction over 1 moves the point further
@pytest.mark.parametrize(
    ("refresh_on", "mandatory_at", "fraction", "spread_to"),
    [
        (100.0, 101.0, 1.0, 100.5),  # a one-second window: half of it
        (100.0, 100.4, 0.5, 100.1),
        (0.0, 1000.0, 1.5, 60.0),  # a fraction over 1 counts as 1
        (0.0, 1000.0, -0.5, 0.0),  # and one under 0 as 0
        (100.0, 100.0, 1.0, 100.0),  # no advisory window: no spread
        (100.0, 90.0, 1.0, 100.0),
    ],
)
def test_the_spread_is_a_fraction_from_0_to_1_of_half_the_window_at_most_a_minute(
    refresh_on: float, mandatory_at: float, fraction: float, spread_to: float
) -> None:
    assert cache.spread(refresh_on, mandatory_at, fraction) == pytest.approx(spread_to)


# ------------------------------------------------------------------------------------------- buckets and storing


def test_a_new_bucket_is_empty_private_and_sweeps_at_64_entries() -> None:
    bucket = cache.Bucket()
    assert dict(bucket) == {}
    assert bucket.shared is False
    assert bucket.sweep_at == 64
    assert bucket.flights == {} and bucket.async_flights == {}
    assert bucket.flights is not bucket.async_flights
    assert isinstance(bucket.lock, type(threading.RLock()))  # re-entrant: a signal handler may take it again
    assert bucket.lock.acquire(blocking=False)
    bucket.lock.release()
    assert cache._all_buckets[id(bucket)] is bucket
    assert cache.Bucket(shared=True).shared is True


def test_after_a_fork_a_bucket_has_no_flights_and_a_fresh_lock() -> None:
    bucket = cache.Bucket()
    bucket.flights["r"] = object()
    bucket.async_flights["r"] = object()
    bucket.lock.acquire()
    cache._after_fork_in_child()
    assert bucket.flights == {} and bucket.async_flights == {}
    assert bucket.lock.acquire(blocking=False)
    bucket.lock.release()


def test_storing_indexes_the_entry_by_the_resource_and_its_default_scope() -> None:
    bucket = cache.Bucket()
    entry = _entry(5000)
    cache.store(bucket, "https://r", entry, now=0.0)
    assert dict(bucket) == {"https://r": entry, "https://r/.default": entry}


def test_a_shared_bucket_is_held_while_it_has_tokens_and_a_private_one_is_not() -> None:
    shared = cache.bucket_for(("s", "e", "i"), shared=True)
    private = cache.bucket_for(("s", "e", "i"), shared=False)
    cache.store(shared, "https://r", _entry(5000), now=0.0)
    cache.store(private, "https://r", _entry(5000), now=0.0)
    assert cache._holding == {id(shared): shared}


class _RacedBuckets(weakref.WeakValueDictionary):  # type: ignore[type-arg]
    """Another thread creates the bucket between the lock-free lookup and the lookup under the lock."""

    def __init__(self, key: cache.BucketKey) -> None:
        super().__init__()
        self.key = key
        self.winner = cache.Bucket(shared=True)
        self.raced = False

    def get(self, key: object, default: object = None) -> object:
        value = super().get(key, default)
        if not self.raced:
            self.raced = True
            self[self.key] = self.winner
        return value


def test_a_shared_bucket_created_by_a_racing_thread_is_the_one_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key: cache.BucketKey = ("source", "endpoint", "identity")
    raced = _RacedBuckets(key)
    monkeypatch.setattr(cache, "_shared_buckets", raced)
    assert cache.bucket_for(key, shared=True) is raced.winner
    assert cache.bucket_for(key, shared=True) is raced.winner


def test_storing_below_the_sweep_size_keeps_expired_entries() -> None:
    bucket = cache.Bucket()
    for i in range(31):  # 62 keys
        cache.store(bucket, f"https://expired{i}", _entry(1000), now=2000.0)
    assert len(bucket) == 62


def test_storing_sweeps_the_bucket_once_it_reaches_its_sweep_size() -> None:
    bucket = cache.Bucket()
    for i in range(31):
        cache.store(bucket, f"https://expired{i}", _entry(1000), now=500.0)
    assert len(bucket) == 62
    cache.store(bucket, "https://live", _entry(5000), now=1000.0)  # 64 keys: the sweep size
    assert sorted(bucket) == ["https://live", "https://live/.default"]


# ---------------------------------------------------------------------------------------------- the shared sweep


@pytest.fixture
def held() -> Iterator[cache.Bucket]:
    """A shared bucket holding one token that expires at 1000, stored at 0 (the first shared sweep ran then)."""
    bucket = cache.bucket_for(("held",), shared=True)
    cache.store(bucket, "https://expiring", _entry(1000), now=0.0)
    assert cache._next_shared_sweep[0] == cache.SHARED_SWEEP_INTERVAL
    yield bucket


def test_the_shared_sweep_drops_expired_tokens_of_held_buckets_and_lets_empty_ones_go(
    held: cache.Bucket,
) -> None:
    cache._sweep_shared(1000.0)
    assert dict(held) == {}
    assert cache._holding == {}
    assert cache._next_shared_sweep[0] == 1000.0 + 60.0


def test_the_shared_sweep_keeps_held_buckets_that_still_have_tokens(held: cache.Bucket) -> None:
    live = _entry(5000)
    held["https://live"] = live
    cache._sweep_shared(1000.0)
    assert dict(held) == {"https://live": live}
    assert cache._holding == {id(held): held}


def test_the_shared_sweep_runs_at_most_once_a_minute(held: cache.Bucket) -> None:
    live = _entry(5000)
    held["https://live"] = live  # keeps the bucket held
    cache._sweep_shared(1000.0)
    assert dict(held) == {"https://live": live}
    held["https://expiring"] = _entry(1000)
    cache._sweep_shared(1059.9)  # within the minute: not swept
    assert "https://expiring" in held
    other = cache.bucket_for(("other",), shared=True)
    cache.store(other, "https://x", _entry(5000), now=1059.9)  # nor by storing elsewhere
    assert "https://expiring" in held
    cache._sweep_shared(1060.0)  # a minute later: swept
    assert dict(held) == {"https://live": live}
    assert cache._next_shared_sweep[0] == 1120.0


def test_storing_sweeps_every_shared_bucket_once_the_minute_has_passed(held: cache.Bucket) -> None:
    other = cache.bucket_for(("other",), shared=True)
    cache.store(other, "https://x", _entry(5000), now=1000.0)
    assert dict(held) == {}
    assert set(cache._holding) == {id(other)}


class _ReplacedWhileSwept(cache.Bucket):
    """A bucket whose place in the holding table is taken by another one while it is swept."""

    replacement: cache.Bucket

    def sweep(self, now: float) -> None:
        super().sweep(now)
        cache._holding[id(self)] = self.replacement


def test_the_shared_sweep_lets_go_only_of_the_bucket_it_emptied() -> None:
    bucket = _ReplacedWhileSwept(shared=True)
    bucket.replacement = cache.Bucket(shared=True)
    bucket["https://expiring"] = _entry(1000)
    cache._holding[id(bucket)] = bucket
    cache._sweep_shared(2000.0)
    assert dict(bucket) == {}
    assert cache._holding == {id(bucket): bucket.replacement}


# ---------------------------------------------------------------------------------------- the bucket's own sweep


def _filled(total: int, expired: int) -> cache.Bucket:
    bucket = cache.Bucket()
    for i in range(total):
        bucket[f"k{i}"] = _entry(1000 if i < expired else 5000)
    return bucket


@pytest.mark.parametrize(
    ("total", "expired", "rebuilt"),
    [
        (64, 48, True),  # 64 entries, a quarter left: the table is rebuilt
        (80, 60, True),
        (64, 47, False),  # more than a quarter left
        (63, 48, False),  # below the sweep size
    ],
)
def test_a_sweep_rebuilds_the_table_when_at_least_64_entries_shrink_to_a_quarter(
    total: int, expired: int, rebuilt: bool
) -> None:
    bucket = _filled(total, expired)
    size = sys.getsizeof(bucket)
    bucket.sweep(2000.0)
    assert sorted(bucket) == sorted(f"k{i}" for i in range(expired, total))
    assert (sys.getsizeof(bucket) < size) is rebuilt


@pytest.mark.parametrize(("total", "expired", "sweep_at"), [(64, 48, 64), (100, 0, 200), (100, 67, 66)])
def test_after_a_sweep_the_next_is_when_the_bucket_has_doubled(
    total: int, expired: int, sweep_at: int
) -> None:
    bucket = _filled(total, expired)
    bucket.sweep(1000.0)
    assert bucket.sweep_at == sweep_at


def test_a_sweep_drops_a_token_from_its_expiry_on_not_before() -> None:
    bucket = cache.Bucket()
    bucket["k"] = _entry(1000)
    bucket.sweep(999.0)
    assert "k" in bucket  # not yet expired
    bucket.sweep(1000.0)
    assert "k" not in bucket


def test_a_sweep_drops_the_tokens_expired_by_now_and_keeps_the_others() -> None:
    bucket = cache.Bucket()
    for i in range(80):
        bucket[f"live{i}"] = _entry(2000)
    for i in range(10):
        bucket[f"expired{i}"] = _entry(1000)  # expires exactly now: no longer servable
    bucket.sweep(1000.0)
    assert sorted(bucket) == sorted(f"live{i}" for i in range(80))
    assert bucket.sweep_at == 160  # the next sweep when the bucket has doubled


def test_a_sweep_that_empties_most_of_a_bucket_keeps_the_live_entries() -> None:
    bucket = cache.Bucket()
    live = _entry(2000)
    bucket["live"] = live
    for i in range(70):
        bucket[f"expired{i}"] = _entry(1000)
    bucket.sweep(1500.0)
    assert dict(bucket) == {"live": live}
    assert bucket.sweep_at == 64


class _RacedBucket(cache.Bucket):
    """A bucket whose entries another thread's sweep removes between this sweep's check and its pop."""

    def get(self, key: str, default: Optional[cache.CacheEntry] = None) -> Optional[cache.CacheEntry]:  # type: ignore[override]
        entry = super().get(key, default)
        super().pop(key, None)
        return entry


def test_a_sweep_racing_another_sweep_for_the_same_entry_does_not_raise() -> None:
    bucket = _RacedBucket()
    entry = cache.CacheEntry(AccessTokenInfo("t", 100), AccessToken("t", 100), 50.0, 90.0)
    bucket["a"] = entry
    bucket["a/.default"] = entry

    bucket.sweep(200.0)

    assert dict(bucket) == {}


# --------------------------------------------------------------------------- refresh windows, through both faces


def test_fresh_token_is_served_until_refresh_on(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = NowClock()
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
    clock = NowClock()
    credential = face.credential(emulator, _clock=clock)

    info = credential.get_token_info(SCOPE)
    for _ in range(59):
        clock.now += 1
        credential.get_token(SCOPE)

    assert info.refresh_on is not None and info.refresh_on - (info.expires_on - 120) == 60
    assert len(emulator.requests) == 1


def test_long_lived_token_refreshes_at_half_life(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=24 * 3600)
    credential = face.credential(emulator, _clock=NowClock())

    info = credential.get_token_info(SCOPE)

    assert info.refresh_on == info.expires_on - 12 * 3600


# --------------------------------------------------------------------- the process-wide cache and its token info


# change: a shared token info built without a token type is not "Bearer" (as `AccessTokenInfo`'s default)
def test_a_shared_token_info_has_the_defaults_of_access_token_info_and_cannot_be_changed() -> None:
    info = cache.SharedTokenInfo("t", 100)
    assert vars(info) == vars(AccessTokenInfo("t", 100))
    assert vars(info) == {"token": "t", "expires_on": 100, "token_type": "Bearer", "refresh_on": None}
    with pytest.raises(AttributeError, match="'token_type' cannot be set"):
        info.token_type = "Basic"
    with pytest.raises(AttributeError, match="'token' cannot be deleted"):
        del info.token
    assert info.token_type == "Bearer" and info.token == "t"


def test_credentials_of_one_identity_share_the_process_cache(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")

    tokens = {face.credential(emulator, share_cache=True).get_token(STORAGE).token for _ in range(5)}
    private = face.credential(emulator, share_cache=False).get_token(STORAGE).token

    assert len(tokens) == 1
    assert private not in tokens
    assert emulator.tokens_issued == 2


def test_errors_are_not_cached_and_the_credential_stays_usable(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(400, {"error": "invalid_request", "error_description": "Identity not found"}))
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError):
        credential.get_token(STORAGE)
    assert credential.get_token(STORAGE).token


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
    other = UserAssignedIdentity("0a0a0a0a-0000-0000-0000-000000000000", "0b0b0b0b-0000", "/r/x")
    emulator = emulator_factory("workload_identity", identities=[other])
    first = ManagedIdentityCredential(_environ=emulator.environ).get_token(SCOPE)
    second = ManagedIdentityCredential(
        _environ=dict(emulator.environ, AZURE_CLIENT_ID=other.client_id)
    ).get_token(SCOPE)

    assert decode_jwt(first.token)["appid"] != decode_jwt(second.token)["appid"] == other.client_id
    assert len(emulator.requests) == 2


# -------------------------------------------------------------------------------------------------------- memory


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
    clock = NowClock(1_900_000_000.0)
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
    clock = NowClock(1_900_000_000.0)
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
