"""Where a token came from, at DEBUG and in a tracing span: for each token acquisition that misses the cache-hit path.

The cache-hit path of ``get_token`` / ``get_token_info`` (a dict lookup and a clock read) logs nothing, starts no
span and is not touched here. Every call past it ends in one DEBUG record on the ``msi_credential`` logger saying
whether the token came from the endpoint (and after how many HTTP requests) or from the cache, and from which source.
The record never holds the token; its ``token_origin`` and ``token_source`` attributes carry the same facts for
handlers. When azure-core's tracing is on, the same facts go on the acquisition's span (_tracing.py), which both
faces open and close alike: ``with trace:`` around the (awaited) acquisition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

from . import _tracing
from ._engine.effects import EffectResult, Send
from ._engine.response import label

if TYPE_CHECKING:
    from azure.core.credentials import AccessTokenInfo

    from ._engine.cache import CacheEntry
    from ._engine.flow import Engine, Flow

_LOGGER = logging.getLogger("msi_credential")

T = TypeVar("T")

ENDPOINT = "endpoint"
CACHE = "cache"
MACHINE_CACHE_REASON = "found in the machine cache"


class TokenTrace:
    """Watches one slow-path acquisition: did this caller's flow send, did it wait for another's, or take the cache.

    Also a context manager: ``with trace:`` starts the acquisition's span when azure-core's tracing is on (nothing
    otherwise) and keeps it current for the block; ``report`` / ``report_failure`` put the outcome on it.
    """

    __slots__ = (
        "_before",
        "_began",
        "_claims",
        "_engine",
        "_resource",
        "_span",
        "beside",
        "ran",
        "sends",
        "took_cached",
    )

    def __init__(self, engine: Engine, resource: str, claims: Optional[str]) -> None:
        self._engine = engine
        self._resource = resource
        self._claims = claims
        self._began = time.perf_counter()
        self._before: Optional[CacheEntry] = None
        self._span: Optional[_tracing.AcquisitionSpan] = None
        self.ran = False  # this caller ran a flow (it led the single flight, or it had claims)
        self.sends = 0  # HTTP requests that flow made (retries and the Azure Arc challenge included)
        self.took_cached = False  # a refresh was in flight elsewhere and this caller took the cached token
        # the cached token was returned at once: True, with a refresh started beside it (unless one was in
        # flight); False, none due (a failed refresh backing off, or the endpoint asked to wait)
        self.beside: Optional[bool] = None

    def served(self, refresh: bool) -> None:
        """The engine said: return the cached token at once (``refresh``: and refresh it beside the caller)."""
        self.beside = refresh

    def watch(self, flow: Flow) -> Flow:
        """Pass the flow's effects through, counting the HTTP requests among them."""
        self.ran = True
        self._before = self._engine.bucket.get(self._resource)
        result: EffectResult = None
        try:
            while True:
                try:
                    effect = flow.send(result)
                except StopIteration as stop:
                    value: AccessTokenInfo = stop.value
                    return value
                if isinstance(effect, Send):
                    self.sends += 1
                result = yield effect
        finally:
            flow.close()

    def still_valid(self, still_valid: Callable[[], Optional[AccessTokenInfo]]) -> Optional[AccessTokenInfo]:
        """The single flight's "serve the cached token while a refresh is in flight" check, noted."""
        value = still_valid()
        self.took_cached = value is not None
        return value

    def __enter__(self) -> TokenTrace:
        self._span = _tracing.start(self._engine.source.value, self._resource)
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc_value: Optional[BaseException],
        traceback: Optional[TracebackType],
    ) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        if exc_value is not None and not isinstance(exc_value, Exception):  # cancelled or interrupted
            span.fail(exc_value)
        span.end()

    def origin(self, info: AccessTokenInfo) -> tuple[str, str]:
        """(``endpoint`` or ``cache``, why), for a token this acquisition returned."""
        if self.ran:
            before = self._before
            renewed = before is None or info is not before.info
            if self.sends and renewed:
                requests = f"{self.sends} HTTP request{'s' if self.sends != 1 else ''}"
                reason = "with the claims challenge, " if self._claims else ""
                return ENDPOINT, f"{reason}{requests}"
            if self.sends:
                return CACHE, "the refresh failed and the cached token is still valid"
            if renewed:  # a new token without a request: the engine took it from the machine cache
                return CACHE, MACHINE_CACHE_REASON
            return CACHE, "no refresh due yet"
        if self.beside is not None:
            if self.beside:
                return CACHE, "the cached token is still valid; it is refreshed beside this call"
            return (
                CACHE,
                "the cached token is still valid; no refresh now (not due, backing off, or asked to wait)",
            )
        if self.took_cached:
            return CACHE, "a refresh is in flight and the cached token is still valid"
        return ENDPOINT, "waited for another caller's request"

    def report(self, info: AccessTokenInfo) -> None:
        span = self._span
        if span is not None:
            origin, why = self.origin(info)
            span.set(
                {
                    _tracing.ATTEMPTS: self.sends,
                    _tracing.ORIGIN: origin,
                    _tracing.MACHINE_CACHE: why == MACHINE_CACHE_REASON,
                }
            )
        if not _LOGGER.isEnabledFor(logging.DEBUG):
            return
        origin, why = self.origin(info)
        source = self._engine.source
        detail = f"{why}; {(time.perf_counter() - self._began) * 1000.0:.1f} ms"
        _LOGGER.debug(
            "%s: token for %s from the %s (%s)",
            label(source),
            self._resource,
            origin,
            detail,
            extra={"token_origin": origin, "token_source": source.value, "token_detail": detail},
        )

    def report_failure(self, error: BaseException) -> None:
        span = self._span
        if span is not None:
            span.set({_tracing.ATTEMPTS: self.sends})
            span.fail(error)
        if not _LOGGER.isEnabledFor(logging.DEBUG):
            return
        source = self._engine.source
        code = getattr(error, "error_code", None) or type(error).__name__
        _LOGGER.debug(
            "%s: no token for %s (%s) after %d HTTP request(s)",
            label(source),
            self._resource,
            code,
            self.sends,
            extra={"token_origin": None, "token_source": source.value},
        )


class OriginRecorder(logging.Handler):
    """Keeps the origin of the last token acquisition reported while it is attached (the CLI's ``token``)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.origin: Optional[str] = None
        self.detail: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        origin = getattr(record, "token_origin", None)
        if origin is not None:
            self.origin = origin
            self.detail = getattr(record, "token_detail", None)

    def describe(self) -> str:
        """``endpoint (1 HTTP request; 3.1 ms)``; ``cache (...)`` also when nothing was reported (a cache hit)."""
        return f"{self.origin} ({self.detail})" if self.detail else str(self.origin)


@contextmanager
def recording_origin() -> Iterator[OriginRecorder]:
    """Attach an OriginRecorder to the ``msi_credential`` logger, at DEBUG, for the block."""
    recorder = OriginRecorder()
    previous = _LOGGER.level
    _LOGGER.addHandler(recorder)
    if not _LOGGER.isEnabledFor(logging.DEBUG):
        _LOGGER.setLevel(logging.DEBUG)
    try:
        yield recorder
    finally:
        _LOGGER.removeHandler(recorder)
        _LOGGER.setLevel(previous)


def with_origin(call: Callable[[], T]) -> tuple[T, OriginRecorder]:
    """Run ``call`` (a token acquisition) and return its result with where the token came from.

    A call that returns without a record was served by the cache-hit path, which reports nothing.
    """
    with recording_origin() as recorder:
        result = call()
    if recorder.origin is None:
        recorder.origin, recorder.detail = CACHE, "a cache hit"
    return result, recorder
