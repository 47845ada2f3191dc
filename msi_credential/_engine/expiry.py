"""Token lifetimes: every expiry format of docs/protocols.md section 3, and when to refresh."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from typing import Optional

MAX_LIFETIME = 7 * 24 * 3600
# Larger numbers are no time at all (and thousands of digits would overflow float arithmetic): refused.
_MAX_SECONDS = 10**15

_FRACTION = re.compile(r"\.(\d+)")
_LEGACY_FORMATS = ("%m/%d/%Y %H:%M:%S %z", "%m/%d/%Y %I:%M:%S %p %z")


class ExpiryError(ValueError):
    """The expiry value is missing, unparseable, past or absurd."""


def parse_seconds(value: object) -> Optional[int]:
    """An int, or a string of decimal digits (optionally with a fraction, truncated); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if abs(value) <= _MAX_SECONDS else None
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and abs(value) <= _MAX_SECONDS else None
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+(\.\d*)?", text):
            whole = text.split(".", 1)[0]
            if len(whole.lstrip("+-")) > 15:
                return None
            return int(whole)
    return None


def parse_expires_on(value: object) -> Optional[int]:
    """Epoch seconds from a number, a numeric string, ISO-8601 or the two legacy date forms; None if none fits."""
    seconds = parse_seconds(value)
    if seconds is not None:
        return seconds
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    for fmt in _LEGACY_FORMATS:
        try:
            return int(datetime.strptime(text, fmt).timestamp())
        except ValueError:
            continue
    return _parse_iso(text)


def _parse_iso(text: str) -> Optional[int]:
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    # Python < 3.11 takes at most 6 fraction digits: keep microseconds, drop the 7th digit.
    text = _FRACTION.sub(lambda m: "." + m.group(1)[:6].ljust(6, "0"), text, count=1)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return int(moment.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def token_times(
    *,
    start: float,
    expires_in: object,
    expires_on: object,
    refresh_in: object,
) -> tuple[int, int]:
    """(expires_on, refresh_on) in epoch seconds. ``start`` is when the request began. Raises ExpiryError."""
    # Whole seconds throughout: the lifetime is judged as the endpoint states it (an expires_in of 7200 is a
    # 2-hour token, not 7199.6 s because the request started at a fractional second).
    base = math.floor(start)
    if expires_in is not None:
        seconds = parse_seconds(expires_in)
        if seconds is None:
            raise ExpiryError("expires_in is not a number of seconds")
        expiry = base + seconds
    elif expires_on is not None:
        parsed = parse_expires_on(expires_on)
        if parsed is None:
            raise ExpiryError("expires_on is not in a known format")
        expiry = parsed
    else:
        raise ExpiryError("the response has neither expires_in nor expires_on")
    lifetime = expiry - base
    if lifetime <= 0:
        raise ExpiryError("the token has already expired")
    if lifetime > MAX_LIFETIME:
        raise ExpiryError("the token's lifetime is over 7 days")
    refresh_seconds = parse_seconds(refresh_in) if refresh_in is not None else None
    if refresh_seconds is not None and 0 < refresh_seconds < lifetime:
        refresh_on = base + refresh_seconds
    elif lifetime >= 7200:
        refresh_on = base + lifetime // 2
    elif lifetime >= 600:
        refresh_on = expiry - 300
    else:
        refresh_on = base + lifetime // 2
    return expiry, refresh_on
