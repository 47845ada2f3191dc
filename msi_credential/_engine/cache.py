"""Token cache: buckets per (source, endpoint, identity), entries per resource (docs/protocols.md section 8)."""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, NoReturn, Optional

from azure.core.credentials import AccessToken, AccessTokenInfo

from .record import Record, field

ADVISORY_RETRY_DELAY = 30.0
MANDATORY_WINDOW_MAX = 60.0
# Each process moves its refresh point later by a random part of this (at most half the advisory window), so that
# processes that got their tokens together do not all ask again in the same second (azure-core's bearer policy
# adds 0 to 60 s likewise).
REFRESH_SPREAD_MAX = 60.0

BucketKey = tuple[object, ...]


class SharedTokenInfo(AccessTokenInfo):
    """The ``AccessTokenInfo`` the cache keeps and hands to every caller, as it is (no copy on the hit path): its
    attributes cannot be set or deleted, so no caller can change what the others get. Reading costs the same as
    on ``AccessTokenInfo``; ``vars()``, pickling and copying see the same four attributes."""

    __slots__ = ()

    def __init__(
        self, token: str, expires_on: int, *, token_type: str = "Bearer", refresh_on: Optional[int] = None
    ) -> None:
        self.__dict__.update(token=token, expires_on=expires_on, token_type=token_type, refresh_on=refresh_on)

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(
            f"the token info is shared by every caller of the token cache: {name!r} cannot be set "
            "(build a new AccessTokenInfo to change it)"
        )

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(
            f"the token info is shared by every caller of the token cache: {name!r} cannot be deleted"
        )


class CacheEntry(Record, frozen=False):
    """A cached token and the moments that decide what a caller does with it."""

    info: AccessTokenInfo = field(repr=False)
    access_token: AccessToken = field(repr=False)
    refresh_on: float
    mandatory_at: float
    # after a failed advisory refresh, no new attempt starts before this moment
    next_attempt_at: float = 0.0

    @classmethod
    def create(cls, info: AccessTokenInfo, start: float) -> CacheEntry:
        lifetime = info.expires_on - start
        margin = min(MANDATORY_WINDOW_MAX, max(lifetime, 0) / 4)
        refresh_on = float(info.refresh_on if info.refresh_on is not None else info.expires_on)
        return cls(
            info=info,
            access_token=AccessToken(info.token, info.expires_on),
            refresh_on=refresh_on,
            mandatory_at=info.expires_on - margin,
        )


def spread(refresh_on: float, mandatory_at: float, fraction: float) -> float:
    """The refresh point moved later by ``fraction`` (0 to 1, from the engine's random source) of the smaller of
    REFRESH_SPREAD_MAX and half the advisory window: never into the mandatory window, and leaving at least half of
    the advisory window for the refresh (and a retry after a failure)."""
    window = mandatory_at - refresh_on
    if window <= 0:
        return refresh_on
    return refresh_on + min(max(fraction, 0.0), 1.0) * min(REFRESH_SPREAD_MAX, window / 2)


def hit_reader(
    bucket: Bucket, clock: Callable[[], float]
) -> Callable[[tuple[Any, ...]], Optional[CacheEntry]]:
    """The cache hit, written once for both faces: ``hit(scopes)`` is the entry for the one scope while it needs no
    refresh, else None (then the caller takes the slow path, which validates the scopes and consults the refresh
    windows). A dict lookup and a clock read: ``bucket.get`` and the clock are bound here, once per credential.
    """
    get = bucket.get

    def hit(scopes: tuple[Any, ...]) -> Optional[CacheEntry]:
        # unpacking rather than len(): as fast as the inline copies this replaced (a try costs nothing unraised)
        try:
            (scope,) = scopes
        except ValueError:  # not one scope: the slow path raises the ValueError
            return None
        try:
            entry = get(scope)
        except TypeError:  # an unhashable scope: likewise
            return None
        if entry is not None and clock() < entry.refresh_on:
            return entry
        return None

    return hit


def store(bucket: Bucket, resource: str, entry: CacheEntry, now: float) -> None:
    """Index the entry by the resource and by its ``/.default`` scope, so a hit needs no normalisation.

    A resource never ends with ``/.default`` (it is stripped), so the two keys cannot collide with others.
    Storing (the slow path, after a token request) is also when expired entries are swept: the bucket's own when it
    has doubled since its last sweep, every shared bucket's once a minute. A hit never pays for it.
    """
    bucket[resource] = entry
    bucket[resource + "/.default"] = entry
    if len(bucket) >= bucket.sweep_at:
        bucket.sweep(now)
    if bucket.shared:
        with _shared_lock:
            _holding[id(bucket)] = bucket
    _sweep_shared(now)


class Bucket(dict[str, CacheEntry]):
    """Entries of one endpoint and identity, by resource and by ``<resource>/.default``.

    It also holds the token requests in flight for it, so credentials sharing the bucket share them too
    (single-flight), whether a caller waits for them or they run beside the callers (a refresh started while the
    cached token may still be served). ``lock`` guards ``flights`` (threads); it is re-entrant, because a signal
    handler that asks for a token can run in a thread while it holds it. ``async_flights`` is touched only in event
    loops.
    """

    __slots__ = ("__weakref__", "async_flights", "flights", "lock", "shared", "sweep_at")

    def __init__(self, shared: bool = False) -> None:
        super().__init__()
        self.lock = threading.RLock()
        self.flights: dict[str, Any] = {}
        self.async_flights: dict[str, Any] = {}
        self.shared = shared
        self.sweep_at = _SWEEP_MINIMUM
        _all_buckets[id(self)] = self

    def sweep(self, now: float) -> None:
        """Drop entries whose token has expired; nothing that may still be served is touched."""
        before = len(self)
        for key, entry in self.copy().items():
            if entry.info.expires_on <= now and self.get(key) is entry:
                self.pop(key, None)
        if before >= _SWEEP_MINIMUM and len(self) * 4 <= before:
            # a dict never gives back its table: rebuild it (a hit in between misses, and the slow path's own
            # lookup finds the entry again)
            kept = self.copy()
            self.clear()
            self.update(kept)
        self.sweep_at = max(_SWEEP_MINIMUM, 2 * len(self))

    def _after_fork(self) -> None:
        # The parent's threads and event loops are not in the child: their flights, background refreshes
        # included, will never finish; the child starts its own.
        self.lock = threading.RLock()
        self.flights = {}
        self.async_flights = {}


_SWEEP_MINIMUM = 64
SHARED_SWEEP_INTERVAL = 60.0

# Buckets by key while a credential uses them (the engine holds the bucket) ...
_shared_buckets: weakref.WeakValueDictionary[BucketKey, Bucket] = weakref.WeakValueDictionary()
# ... or while they hold tokens that have not expired (a credential built per request finds the last one's token).
_holding: dict[int, Bucket] = {}
_all_buckets: weakref.WeakValueDictionary[int, Bucket] = weakref.WeakValueDictionary()  # by identity
_shared_lock = threading.Lock()
_next_shared_sweep = [0.0]


def _sweep_shared(now: float) -> None:
    if now < _next_shared_sweep[0]:
        return
    with _shared_lock:
        if now < _next_shared_sweep[0]:
            return
        _next_shared_sweep[0] = now + SHARED_SWEEP_INTERVAL
        holding = list(_holding.items())
    for ident, bucket in holding:
        bucket.sweep(now)
        if not bucket:
            with _shared_lock:
                if not bucket and _holding.get(ident) is bucket:
                    del _holding[ident]


def bucket_for(key: BucketKey, *, shared: bool) -> Bucket:
    """The bucket for one endpoint and identity: process-wide, or private. Lookups are O(1) in its size."""
    if not shared:
        return Bucket()
    bucket = _shared_buckets.get(key)
    if bucket is None:
        with _shared_lock:
            bucket = _shared_buckets.get(key)
            if bucket is None:
                bucket = Bucket(shared=True)
                _shared_buckets[key] = bucket
    return bucket


def shared_bucket_count() -> int:
    """How many process-wide buckets are alive (tests, diagnostics)."""
    return len(_shared_buckets)


def clear_shared_cache() -> None:
    """Forget every process-wide cached token (tests; after rotating an identity)."""
    with _shared_lock:
        for bucket in list(_shared_buckets.values()):
            bucket.clear()
        for bucket in _holding.values():
            bucket.clear()
        _shared_buckets.clear()
        _holding.clear()
        _next_shared_sweep[0] = 0.0


def _after_fork_in_child() -> None:
    global _shared_lock
    _shared_lock = threading.Lock()
    for bucket in list(_all_buckets.values()):
        bucket._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
