"""Retry schedules of docs/protocols.md section 7: which answers are retried, and how long to wait."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Optional

from .record import Record

IMDS_RETRIED = frozenset({404, 408, 410, 429, *range(500, 600)})
STANDARD_RETRIED = frozenset({408, 429, 500, 502, 503, 504})
DEFAULT_RETRIES = 3
GONE_RETRIES = 7
GONE_STEP = 10.0
RETRY_AFTER_LIMIT = 60.0


class RetrySettings(Record):
    """The azure-core keywords that adjust every schedule, and the deadline no retry crosses."""

    total: Optional[int] = None
    backoff_factor: float = 1.0
    backoff_max: float = 60.0
    deadline: float = 120.0


class RetrySchedule:
    """Per-request retry state: one instance per token request, never shared."""

    def __init__(self, settings: RetrySettings, profile: Literal["imds", "standard"]) -> None:
        self._settings = settings
        self._profile = profile
        self._retries = 0
        self._gone = False

    @property
    def retries(self) -> int:
        return self._retries

    def retried(self, status: int) -> bool:
        table = IMDS_RETRIED if self._profile == "imds" else STANDARD_RETRIED
        return status in table

    def next_delay(
        self,
        *,
        status: Optional[int],
        headers: Mapping[str, str],
        now: float,
        elapsed: float,
    ) -> Optional[float]:
        """Seconds to wait before the next attempt, or None to stop and raise the last outcome."""
        if status == 410 and self._profile == "imds":
            self._gone = True
        limit = self._settings.total
        if limit is None:
            limit = GONE_RETRIES if self._gone else DEFAULT_RETRIES
        if self._retries >= limit:
            return None
        factor = self._settings.backoff_factor
        step = GONE_STEP * factor if self._gone else factor * (2**self._retries)
        step = min(step, self._settings.backoff_max)
        server_delay = retry_after(headers, now)
        if server_delay is not None:
            if server_delay > RETRY_AFTER_LIMIT:
                return None
            step = max(step, server_delay)
        if elapsed + step > self._settings.deadline:
            return None
        self._retries += 1
        return max(step, 0.0)


def retry_after(headers: Mapping[str, str], now: float) -> Optional[float]:
    """The server's requested delay in seconds from any of the headers azure-core knows, else None."""
    for name, scale in (("retry-after-ms", 0.001), ("x-ms-retry-after-ms", 0.001)):
        value = headers.get(name)
        if value is not None:
            try:
                seconds = float(value) * scale
            except ValueError:
                continue
            if seconds >= 0 and seconds == seconds:
                return seconds
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        import email.utils  # only for the rare HTTP-date form

        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None:
            return None
        return max(moment.timestamp() - now, 0.0)
    return seconds if seconds >= 0 and seconds == seconds and seconds != float("inf") else None
