"""What both faces' single-flight share: how long a caller may wait on a request another caller leads.

A caller that joins a request already in flight for the same token (another thread, task or credential sharing the
cache) waits at most what is left of its own call's ``timeout=``, measured on the engine's monotonic clock; then it
gets its own ``timeout`` error, whatever the leader's deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .._errors import ManagedIdentityError, failed
from .._source import ManagedIdentitySource

# A joiner re-reads its clock at least this often while it waits (an injected clock may jump).
JOIN_SLICE = 1.0


@dataclass(frozen=True)
class JoinLimit:
    """One credential's bound on waiting for another caller's request: its ``timeout=`` and monotonic clock."""

    seconds: float
    clock: Callable[[], float]
    source: ManagedIdentitySource

    def deadline(self) -> float:
        """When a wait that starts now must end, on ``clock``."""
        return self.clock() + self.seconds

    def remaining(self, deadline: float) -> float:
        """Seconds left before ``deadline`` (at most JOIN_SLICE); raises the timeout error when none is left."""
        left = deadline - self.clock()
        if left <= 0:
            raise self.expired()
        return min(left, JOIN_SLICE)

    def expired(self) -> ManagedIdentityError:
        return failed(
            f"timeout={self.seconds:g} s passed while this call waited for the same token's request, which "
            "another caller sharing the cache had in flight",
            error_code="timeout",
            source=self.source,
        )
