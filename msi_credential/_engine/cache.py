"""Token cache: buckets per (source, endpoint, identity), entries per resource (docs/protocols.md section 8)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

ADVISORY_RETRY_DELAY = 30.0
MANDATORY_WINDOW_MAX = 60.0

BucketKey = tuple[object, ...]


@dataclass
class CacheEntry:
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


def store(bucket: Bucket, resource: str, entry: CacheEntry) -> None:
    """Index the entry by the resource and by its ``/.default`` scope, so a hit needs no normalisation.

    A resource never ends with ``/.default`` (it is stripped), so the two keys cannot collide with others.
    """
    bucket[resource] = entry
    bucket[resource + "/.default"] = entry


class Bucket(dict[str, CacheEntry]):
    """Entries of one endpoint and identity, by resource and by ``<resource>/.default``.

    It also holds the token requests in flight for it, so credentials sharing the bucket share them too
    (single-flight). ``lock`` guards ``flights`` (threads); ``async_flights`` is touched only in event loops.
    """

    __slots__ = ("async_flights", "flights", "lock")

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.flights: dict[str, Any] = {}
        self.async_flights: dict[str, Any] = {}


_shared_buckets: dict[BucketKey, Bucket] = {}
_shared_lock = threading.Lock()


def bucket_for(key: BucketKey, *, shared: bool) -> Bucket:
    """The bucket for one endpoint and identity: process-wide, or private. Lookups are O(1) in its size."""
    if not shared:
        return Bucket()
    bucket = _shared_buckets.get(key)
    if bucket is None:
        with _shared_lock:
            bucket = _shared_buckets.get(key)
            if bucket is None:
                bucket = _shared_buckets[key] = Bucket()
    return bucket


def clear_shared_cache() -> None:
    """Forget every process-wide cached token (tests; after rotating an identity)."""
    with _shared_lock:
        for bucket in _shared_buckets.values():
            bucket.clear()
        _shared_buckets.clear()
