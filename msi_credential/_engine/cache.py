"""Token cache: buckets per (source, endpoint, identity), entries per resource (PROTOCOLS.md section 8)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional

from azure.core.credentials import AccessToken, AccessTokenInfo

ADVISORY_RETRY_DELAY = 30.0
MANDATORY_WINDOW_MAX = 60.0

BucketKey = tuple[str, str, str, str]


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


Bucket = dict[str, CacheEntry]

_shared_buckets: dict[BucketKey, Bucket] = {}
_shared_lock = threading.Lock()


def bucket_for(key: BucketKey, *, shared: bool) -> Bucket:
    """The resource -> entry mapping for one endpoint and identity: process-wide, or private."""
    if not shared:
        return {}
    bucket = _shared_buckets.get(key)
    if bucket is None:
        with _shared_lock:
            bucket = _shared_buckets.setdefault(key, {})
    return bucket


def clear_shared_cache() -> None:
    """Forget every process-wide cached token (tests; after rotating an identity)."""
    with _shared_lock:
        for bucket in _shared_buckets.values():
            bucket.clear()
        _shared_buckets.clear()


def fresh(bucket: Bucket, resource: str, now: float) -> Optional[AccessTokenInfo]:
    """The hot path: a dict lookup, a clock comparison, a return."""
    entry = bucket.get(resource)
    if entry is not None and now < entry.refresh_on:
        return entry.info
    return None
