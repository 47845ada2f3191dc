"""The sync driver: performs the engine's effects with an azure-core Pipeline and time.sleep."""

from __future__ import annotations

import contextvars
import logging
import socket
import threading
import time
from typing import Any, Callable, Optional

import requests
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import (
    AzureError,
)
from azure.core.pipeline import Pipeline
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager

from .._engine.cache import Bucket
from .._engine.effects import (
    EffectResult,
    ReadAssertion,
    ReadKeyFile,
    Request,
    Response,
    Send,
    Sleep,
    TransportFailure,
)
from .._engine.flow import Flow
from .._errors import failed
from .common import NO_PROXIES, body_too_large, to_http_request, transport_failure, user_proxies
from .files import read_file
from .policies import build_policies

_LOGGER = logging.getLogger("msi_credential")


class _PinnedAdapter(HTTPAdapter):
    """urllib3 checks the server certificate's SHA-1 after the handshake, before any request byte is written."""

    def __init__(self, sha1: str) -> None:
        self._sha1 = sha1
        super().__init__(max_retries=0)

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = PoolManager(
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            assert_fingerprint=self._sha1,
            assert_hostname=False,
            **pool_kwargs,
        )


def pinned_session(sha1: str) -> requests.Session:
    """A requests session whose HTTPS connections must present a certificate with this SHA-1."""
    session = requests.Session()
    session.trust_env = False
    session.mount("https://", _PinnedAdapter(sha1))
    session.mount("http://", _RefusingAdapter())
    return session


class _RefusingAdapter(HTTPAdapter):
    """Plain HTTP on a pinned session would skip the pin: refuse it."""

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise requests.exceptions.SSLError("fingerprint pinning requires https")


class _Watchdog:
    """Cuts a response's connection when the attempt's budget runs out: a body that trickles in slowly
    would otherwise hold the caller, since socket timeouts apply to each read, not to the whole body."""

    def __init__(self, http_response: Any, seconds: float) -> None:
        self.fired = False
        self._response = http_response
        self._timer = threading.Timer(max(seconds, 0.0), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        self.fired = True
        connection = getattr(
            getattr(getattr(self._response, "internal_response", None), "raw", None), "connection", None
        )
        sock = getattr(connection, "sock", None)
        try:
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
            else:
                self._response.close()
        except OSError:
            pass

    def cancel(self) -> None:
        self._timer.cancel()


class _Flight:
    """One token request in flight, and what its waiters will get."""

    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Optional[AccessTokenInfo] = None
        self.error: Optional[BaseException] = None


def single_flight(
    bucket: Bucket,
    resource: str,
    request: Callable[[], AccessTokenInfo],
    still_valid: Callable[[], Optional[AccessTokenInfo]],
) -> AccessTokenInfo:
    """Threads that miss the cache for one resource share one request, its token or its error.

    A thread that finds a refresh in flight while the cached token may still be served takes the cached token.
    """
    with bucket.lock:
        existing: Optional[_Flight] = bucket.flights.get(resource)
        leader = existing is None
        flight = _Flight() if existing is None else existing
        if leader:
            bucket.flights[resource] = flight
    if not leader:
        cached = still_valid()
        if cached is not None:
            return cached
        flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.result is not None
        return flight.result
    try:
        flight.result = request()
        return flight.result
    except Exception as error:
        flight.error = error
        raise
    except BaseException:
        flight.error = failed("the token request was interrupted", error_code="interrupted")
        raise
    finally:
        with bucket.lock:
            if bucket.flights.get(resource) is flight:
                del bucket.flights[resource]
        flight.done.set()


class SyncDriver:
    """Runs engine flows. Owns the pipelines it creates; a user-supplied transport stays the user's."""

    def __init__(
        self,
        *,
        transport: Optional[HttpTransport[Any, Any]] = None,
        sleep: Callable[[float], None],
        **kwargs: Any,
    ) -> None:
        self._sleep = sleep
        self._kwargs = kwargs
        self._policies = build_policies(**kwargs)
        self._user_pipeline: Optional[Pipeline[Any, Any]] = None
        if transport is not None:
            self._user_pipeline = Pipeline(transport=transport, policies=self._policies)
        # Our own pipelines, made on first need (again after close()): "direct", "proxied", "pin:<sha1>".
        self._owned: dict[str, Pipeline[Any, Any]] = {}
        self._lock = threading.Lock()

    def run(self, flow: Flow) -> AccessTokenInfo:
        """Drive a flow to its end, performing each effect it yields."""
        result: EffectResult = None
        while True:
            try:
                effect = flow.send(result)
            except StopIteration as stop:
                value: AccessTokenInfo = stop.value
                return value
            if isinstance(effect, Send):
                result = self.send(effect.request)
            elif isinstance(effect, Sleep):
                self._sleep(effect.seconds)
                result = None
            elif isinstance(effect, (ReadKeyFile, ReadAssertion)):
                result = read_file(effect)
            else:  # pragma: no cover - the engine yields nothing else
                raise TypeError(f"unknown effect {effect!r}")

    def send(self, request: Request) -> Response | TransportFailure:
        """One attempt, bounded in all by the request's budget.

        Socket timeouts bound each read, not the whole answer: an endpoint that trickles its headers or body could
        hold the caller (and every single-flight waiter) indefinitely. The attempt runs in a worker thread; the
        caller waits at most the budget, and the watchdog then cuts the worker's connection.
        """
        outcome: list[Any] = []
        done = threading.Event()
        context = contextvars.copy_context()

        def attempt() -> None:
            try:
                outcome.append(context.run(self._attempt, request))
            except BaseException as error:
                outcome.append(error)
            finally:
                done.set()

        worker = threading.Thread(target=attempt, name="msi-credential-request", daemon=True)
        worker.start()
        if not done.wait(request.budget):
            return TransportFailure("read_timeout", "no complete answer before the deadline")
        result = outcome[0]
        if isinstance(result, BaseException):
            raise result
        answer: Response | TransportFailure = result
        return answer

    def _attempt(self, request: Request) -> Response | TransportFailure:
        pipeline, extra = self._pipeline_for(request)
        give_up_at = time.monotonic() + request.budget
        try:
            pipeline_response = pipeline.run(
                to_http_request(request),
                stream=True,
                connection_timeout=request.connect_timeout,
                read_timeout=request.read_timeout,
                **extra,
            )
            http_response = pipeline_response.http_response
            watchdog = _Watchdog(http_response, give_up_at - time.monotonic())
            try:
                chunks: list[bytes] = []
                size = 0
                for chunk in http_response.iter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if body_too_large(size):
                        break
            except (AzureError, requests.RequestException, OSError) as error:
                if watchdog.fired:
                    return TransportFailure("read_timeout", "the body was still arriving at the deadline")
                raise error
            finally:
                watchdog.cancel()
                http_response.close()
            if watchdog.fired:
                return TransportFailure("read_timeout", "the body was still arriving at the deadline")
            return Response(
                status=http_response.status_code,
                headers={key.lower(): value for key, value in http_response.headers.items()},
                body=b"".join(chunks),
            )
        except Exception as error:
            failure = transport_failure(error)
            if failure is None:
                raise
            return failure

    def _pipeline_for(self, request: Request) -> tuple[Pipeline[Any, Any], dict[str, Any]]:
        if request.pin_sha1 is not None:
            if self._user_pipeline is not None:
                _LOGGER.debug(
                    "Service Fabric: the supplied transport is not used; the token request goes over "
                    "a connection pinned to IDENTITY_SERVER_THUMBPRINT"
                )
            return self._owned_pipeline("pin:" + request.pin_sha1, request.pin_sha1), {
                "connection_verify": False
            }
        if request.use_proxies:
            proxies = user_proxies(self._kwargs)
            if self._user_pipeline is not None:
                return self._user_pipeline, proxies
            return self._owned_pipeline("proxied"), proxies
        if self._user_pipeline is not None:
            return self._user_pipeline, {"proxies": dict(NO_PROXIES)}
        return self._owned_pipeline("direct"), {}

    def _owned_pipeline(self, key: str, pin_sha1: Optional[str] = None) -> Pipeline[Any, Any]:
        pipeline = self._owned.get(key)
        if pipeline is not None:
            return pipeline
        with self._lock:
            pipeline = self._owned.get(key)
            if pipeline is None:
                if pin_sha1 is not None:
                    # trust_env off: a proxy would bypass the pin (its connection is not the pinned adapter's)
                    transport = RequestsTransport(
                        session=pinned_session(pin_sha1), session_owner=True, use_env_settings=False
                    )
                else:
                    transport = RequestsTransport(
                        use_env_settings=key == "proxied", **_transport_kwargs(self._kwargs)
                    )
                pipeline = self._owned[key] = Pipeline(transport=transport, policies=self._policies)
        return pipeline

    def close(self) -> None:
        """Close our pipelines (made again if the credential is used after) and a supplied transport."""
        with self._lock:
            owned = list(self._owned.values())
            self._owned.clear()
        for pipeline in owned:
            pipeline.__exit__()
        if self._user_pipeline is not None:
            self._user_pipeline.__exit__()


def _transport_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs[key] for key in ("connection_verify", "connection_cert") if key in kwargs}
