"""The sync driver: performs the engine's effects with an azure-core Pipeline and time.sleep."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import threading
import time
from typing import Any, Callable, Optional

import requests
from azure.core.credentials import AccessTokenInfo
from azure.core.pipeline import Pipeline
from azure.core.pipeline.transport import HttpTransport, RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util.retry import Retry

from .._engine.cache import Bucket
from .._engine.effects import (
    FILE_READS,
    MACHINE_EFFECTS,
    EffectResult,
    Request,
    Response,
    Send,
    Sleep,
    TransportFailure,
)
from .._engine.flow import Flow
from .._errors import ManagedIdentityError, failed
from . import deadline, machine_cache
from .common import (
    NO_PROXIES,
    BodyReader,
    UndecodableBody,
    UserTransport,
    consumed_body,
    stream_method,
    to_http_request,
    token_proxy_context,
    transport_failure,
    unreadable_response,
    user_proxies,
    whole_body,
    whole_body_methods,
)
from .files import read_file
from .flight import JoinLimit
from .policies import build_policies

_LOGGER = logging.getLogger("msi_credential")


class _WatchedHTTPConnection(HTTPConnection):
    """Registers its socket with the calling thread's attempt (deadline.Watch) when it connects or is reused."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        deadline.register(sock)
        return sock

    def connect(self) -> None:
        super().connect()
        deadline.register(self.sock)  # the TLS socket wraps the one registered in _new_conn

    def request(self, *args: Any, **kwargs: Any) -> Any:
        if self.sock is not None:  # a pooled connection, reused
            deadline.register(self.sock)
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_WATCHED_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _WatchedAdapter(HTTPAdapter):
    """requests' adapter over connections whose sockets an attempt's deadline can cut; no retries, no redirects."""

    def __init__(self) -> None:
        super().__init__(max_retries=Retry(total=False, redirect=False, raise_on_status=False))

    def _pool_kwargs(self) -> dict[str, Any]:
        return {}

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        self.poolmanager = PoolManager(
            num_pools=connections, maxsize=maxsize, block=block, **self._pool_kwargs(), **pool_kwargs
        )
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


class _PinnedAdapter(_WatchedAdapter):
    """urllib3 checks the server certificate's SHA-1 after the handshake, before any request byte is written."""

    def __init__(self, sha1: str) -> None:
        self._sha1 = sha1
        super().__init__()

    def _pool_kwargs(self) -> dict[str, Any]:
        return {"assert_fingerprint": self._sha1, "assert_hostname": False}


class _TokenProxyAdapter(_WatchedAdapter):
    """AKS token proxy: the server's certificate must chain to the cluster's CA (only that CA: requests' certifi
    bundle is not added) and name the SNI server name, which is also what the handshake sends."""

    def __init__(self, ca_pem: Optional[str], server_name: Optional[str]) -> None:
        self._context = token_proxy_context(ca_pem)
        self._server_name = server_name
        super().__init__()

    def _pool_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"ssl_context": self._context}
        if self._server_name:
            kwargs.update(server_hostname=self._server_name, assert_hostname=self._server_name)
        return kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        conn.cert_reqs = "CERT_REQUIRED"  # always checked, whatever connection_verify says
        conn.ca_certs = None
        conn.ca_cert_dir = None


class NoRedirectSession(requests.Session):
    """A requests session that never looks for a redirect's target. A plain session does even with redirects off,
    and reads the whole body of a 3xx for it, past our size bound; the drivers read it, bounded, like any body."""

    def get_redirect_target(self, resp: requests.Response) -> None:
        return None


def token_proxy_session(ca_pem: Optional[str], server_name: Optional[str]) -> requests.Session:
    """A requests session to the AKS token proxy: https only, no environment proxies, the proxy's CA and name."""
    session = NoRedirectSession()
    session.trust_env = False
    session.mount("https://", _TokenProxyAdapter(ca_pem, server_name))
    session.mount("http://", _RefusingAdapter("the AKS token proxy is reached over https only"))
    return session


def watched_session(*, trust_env: bool) -> requests.Session:
    """A requests session for our own pipelines: every attempt's deadline reaches its sockets."""
    session = NoRedirectSession()
    session.trust_env = trust_env
    adapter = _WatchedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def pinned_session(sha1: str) -> requests.Session:
    """A requests session whose HTTPS connections must present a certificate with this SHA-1."""
    session = NoRedirectSession()
    session.trust_env = False
    session.mount("https://", _PinnedAdapter(sha1))
    session.mount("http://", _RefusingAdapter("fingerprint pinning requires https"))
    return session


class _RefusingAdapter(HTTPAdapter):
    """Plain HTTP on a pinned or token proxy session would skip the TLS check: refuse it."""

    def __init__(self, why: str) -> None:
        self._why = why
        super().__init__()

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        raise requests.exceptions.SSLError(self._why)


class _Flight:
    """One token request in flight, the thread that leads it, and what its waiters will get."""

    __slots__ = ("abandoned", "done", "error", "leader", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Optional[AccessTokenInfo] = None
        self.error: Optional[BaseException] = None
        self.leader = threading.get_ident()
        # a refresh beside the callers, ended by its credential's close(): a waiter asks again
        self.abandoned = False


# Seconds close() waits, in all, for the refreshes it ends (their sockets are shut at once, so they end quickly).
CLOSE_WAIT = 1.0


class _Cancelled(Exception):
    """close() ended a refresh running beside the callers."""


class _Job:
    """A refresh running beside the callers, in a thread of its own; close() ends it."""

    __slots__ = ("stop", "thread", "watch")

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.watch: Optional[deadline.Watch] = None
        self.thread: Optional[threading.Thread] = None

    def cancel(self) -> None:
        """No further effect is performed; an attempt on the wire has its sockets shut; a wait ends."""
        self.stop.set()
        watch = self.watch
        if watch is not None:
            watch.fire()


def single_flight(
    bucket: Bucket,
    resource: str,
    request: Callable[[], AccessTokenInfo],
    still_valid: Callable[[], Optional[AccessTokenInfo]],
    limit: Optional[JoinLimit] = None,
) -> AccessTokenInfo:
    """Threads that miss the cache for one resource share one request, its token or its error.

    A thread that finds a refresh in flight while the cached token may still be served takes the cached token.
    A joining thread waits at most its own ``limit`` (its call's ``timeout=``). The leading thread itself,
    re-entering (a signal handler or a hook that runs in it during its request), never waits on its own flight:
    it takes the cached token while it may be served, else makes a request of its own. A waiter whose flight was
    a refresh beside the callers that its credential's close() ended asks again.
    """
    deadline = None if limit is None else limit.deadline()
    while True:
        with bucket.lock:
            existing: Optional[_Flight] = bucket.flights.get(resource)
            leader = existing is None
            flight = _Flight() if existing is None else existing
            if leader:
                bucket.flights[resource] = flight
        if leader:
            break
        cached = still_valid()
        if cached is not None:
            return cached
        if flight.leader == threading.get_ident():
            return request()  # waiting here would wait for this very thread: forever
        _join(flight, limit, deadline)
        if flight.abandoned:
            continue  # a refresh beside the callers, ended by close(): ask again
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


def _end_flight(bucket: Bucket, resource: str, flight: _Flight) -> None:
    with bucket.lock:
        if bucket.flights.get(resource) is flight:
            del bucket.flights[resource]
    flight.done.set()


def _join(flight: _Flight, limit: Optional[JoinLimit], deadline: Optional[float]) -> None:
    """Wait for another thread's flight, at most until this call's own deadline."""
    if limit is None or deadline is None:
        flight.done.wait()
        return
    while not flight.done.is_set():
        flight.done.wait(limit.remaining(deadline))


def read_body(http_response: Any, reader: BodyReader) -> None:
    """Feed the response's body to ``reader``: streamed when the response can stream it (stopping at the size
    bound), else what ``body()`` or ``text()`` returns (azure-core's older responses, test doubles)."""
    consumed = consumed_body(http_response)
    if consumed is not None:
        reader.feed(consumed)
        return
    stream = stream_method(http_response)
    if stream is not None:
        for chunk in stream():
            if reader.feed(chunk):
                break
        return
    for name, method in whole_body_methods(http_response):
        data = whole_body(name, method())
        if data is not None:
            reader.feed(data)
            return
    raise unreadable_response(http_response)


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
        self._user = UserTransport(transport)
        self._user_pipeline: Optional[Pipeline[Any, Any]] = None
        if transport is not None:
            self._user_pipeline = Pipeline(transport=transport, policies=self._policies)
        # Our own pipelines, made on first need (again after close() and in a forked child): "direct",
        # "proxied", "pin:<sha1>".
        self._owned: dict[str, Pipeline[Any, Any]] = {}
        self._pid = os.getpid()
        # re-entrant: close() may run in a signal handler of a thread that holds it
        self._lock = threading.RLock()
        self._jobs: set[_Job] = set()  # refreshes beside the callers that this credential started

    def refresh_beside(self, bucket: Bucket, resource: str, flow: Callable[[], Flow]) -> None:
        """Start the flow in a daemon thread of its own, as the token's single flight, unless one is in flight.

        The caller does not wait for it. Waiters that arrive meanwhile (past the mandatory window) join it like any
        flight; close() ends it (``_Job.cancel``); a forked child has none (cache.Bucket._after_fork). When no thread
        can start, the refresh is put off to a later call (logged); the caller is not failed for it.
        """
        if os.getpid() != self._pid:
            self._forget_inherited_pipelines()
        with bucket.lock:
            if resource in bucket.flights:
                return
            flight = _Flight()
            flight.leader = 0  # no thread's: the refresh thread takes it when it starts
            bucket.flights[resource] = flight
        job = _Job()
        job.thread = threading.Thread(
            target=self._refresh,
            args=(bucket, resource, flight, flow, job),
            name="msi-credential-refresh",
            daemon=True,
        )
        with self._lock:
            self._jobs.add(job)
        try:
            job.thread.start()
        except BaseException as error:  # no thread (resources exhausted, interpreter shutting down)
            with self._lock:
                self._jobs.discard(job)
            _end_flight(bucket, resource, flight)  # nothing in flight: a later call tries again
            if not isinstance(error, Exception):
                raise
            # the caller still gets its cached token, which may be served: only the refresh is put off
            _LOGGER.warning("a token refresh could not start beside the callers (%s)", type(error).__name__)

    def _refresh(
        self, bucket: Bucket, resource: str, flight: _Flight, flow: Callable[[], Flow], job: _Job
    ) -> None:
        flight.leader = threading.get_ident()
        try:
            flight.result = self.run(flow(), job)
        except _Cancelled:
            flight.abandoned = True
            _LOGGER.debug("a token refresh running beside the callers was ended by close()")
        except Exception as error:  # logged without its message: only the code or the type
            flight.error = error
            _LOGGER.warning(
                "a token refresh running beside the callers failed (%s)",
                getattr(error, "error_code", None) or type(error).__name__,
            )
        except BaseException:  # pragma: no cover - SystemExit and the like in a daemon thread
            flight.error = failed("the token request was interrupted", error_code="interrupted")
            raise
        finally:
            _end_flight(bucket, resource, flight)
            with self._lock:
                self._jobs.discard(job)

    def settle(self, timeout: Optional[float] = None) -> bool:
        """Wait for the refreshes this credential runs beside its callers to end; True when none is left. Called
        from one of them (a hook or policy of that refresh closing its credential), it does not wait for itself."""
        current = threading.current_thread()
        with self._lock:
            threads = [
                job.thread for job in self._jobs if job.thread is not None and job.thread is not current
            ]
        ends = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.join(None if ends is None else max(ends - time.monotonic(), 0.0))
        return not any(thread.is_alive() for thread in threads)

    def run(self, flow: Flow, job: Optional[_Job] = None) -> AccessTokenInfo:
        """Drive a flow to its end, performing each effect it yields (``job``: a refresh close() may end)."""
        result: EffectResult = None
        # machine cache locks this flow holds: released when it ends, however it ends (a cancelled call too)
        held = machine_cache.Holdings()
        try:
            while True:
                if job is not None and job.stop.is_set():
                    flow.close()
                    raise _Cancelled
                try:
                    effect = flow.send(result)
                except StopIteration as stop:
                    value: AccessTokenInfo = stop.value
                    return value
                if isinstance(effect, Send):
                    result = self.send(effect.request, job)
                elif isinstance(effect, Sleep):
                    if job is not None and self._sleep is time.sleep:
                        job.stop.wait(effect.seconds)  # close() ends the wait
                    else:
                        self._sleep(effect.seconds)
                    result = None
                elif isinstance(effect, FILE_READS):
                    result = read_file(effect)
                elif isinstance(effect, MACHINE_EFFECTS):
                    result = machine_cache.perform(effect, held)
                else:  # pragma: no cover - the engine yields nothing else
                    raise TypeError(f"unknown effect {effect!r}")
        finally:
            machine_cache.release_all(held)

    def send(self, request: Request, job: Optional[_Job] = None) -> Response | TransportFailure:
        """One attempt in the calling thread, bounded in all (connect, headers, body) by the request's budget.

        The sockets our connections open or reuse register with the attempt's Watch; when the budget runs out,
        the process's one deadline thread shuts them down and the blocked read returns. A caller's transport has
        no such hook: there the budget cuts the body, and its own timeouts bound the rest.
        """
        pipeline, extra = self._pipeline_for(request)
        with deadline.TIMER.watch(request.budget) as watch:
            if job is not None:
                job.watch = watch  # close() shuts this attempt's sockets
                if job.stop.is_set():
                    watch.fire()
            try:
                return self._attempt(pipeline, extra, request, watch)
            except ManagedIdentityError:
                raise  # a supplied transport's response we cannot read (read_body): not a network failure
            except Exception as error:
                if watch.fired:
                    return TransportFailure("read_timeout", "no complete answer before the deadline")
                failure = transport_failure(error)
                if failure is None:
                    raise
                return failure

    def _attempt(
        self,
        pipeline: Pipeline[Any, Any],
        extra: dict[str, Any],
        request: Request,
        watch: deadline.Watch,
    ) -> Response | TransportFailure:
        pipeline_response = pipeline.run(
            to_http_request(request),
            stream=True,
            connection_timeout=request.connect_timeout,
            read_timeout=request.read_timeout,
            **extra,
        )
        http_response = pipeline_response.http_response
        watch.response = http_response
        headers = {key.lower(): value for key, value in http_response.headers.items()}
        reader = BodyReader(headers)
        try:
            read_body(http_response, reader)
            body = reader.finish()
        except UndecodableBody:
            return TransportFailure("read", "the body is not valid for its Content-Encoding")
        finally:
            close = getattr(http_response, "close", None)
            if callable(close):  # azure-core's older responses and test doubles may have none
                close()
        if watch.fired:
            return TransportFailure("read_timeout", "the body was still arriving at the deadline")
        return Response(status=http_response.status_code, headers=headers, body=body)

    def _pipeline_for(self, request: Request) -> tuple[Pipeline[Any, Any], dict[str, Any]]:
        if os.getpid() != self._pid:
            self._forget_inherited_pipelines()
        if request.token_proxy:
            self._user.warn_once("token_proxy")
            return self._token_proxy_pipeline(request), {}
        if request.pin_sha1 is not None:
            self._user.warn_once("pin")
            return self._owned_pipeline("pin:" + request.pin_sha1, request.pin_sha1), {
                "connection_verify": False
            }
        if self._user_pipeline is not None:
            self._user.check_open()
            if request.use_proxies:
                return self._user_pipeline, user_proxies(self._kwargs)
            # requests honours a per-request "no proxy" even on a session that trusts the environment
            return self._user_pipeline, {"proxies": dict(NO_PROXIES)}
        if request.use_proxies:
            return self._owned_pipeline("proxied"), user_proxies(self._kwargs)
        return self._owned_pipeline("direct"), {}

    def _forget_inherited_pipelines(self) -> None:
        """In a forked child: the parent's pooled connections are the parent's; close our copies, start anew."""
        inherited = list(self._owned.values())
        self._owned = {}
        self._lock = threading.RLock()
        self._jobs = set()  # the parent's refresh threads are not in this process
        self._pid = os.getpid()
        for pipeline in inherited:
            with contextlib.suppress(Exception):
                pipeline.__exit__()

    def _token_proxy_pipeline(self, request: Request) -> Pipeline[Any, Any]:
        """Ours, for the current CA and server name; a rotated CA gets a new one (new connections, new check)."""
        digest = hashlib.sha256((request.tls_ca or "").encode("utf-8")).hexdigest()
        key = f"token_proxy:{digest}:{request.tls_server_name or ''}"
        pipeline = self._owned.get(key)
        if pipeline is not None:
            return pipeline
        stale: list[Pipeline[Any, Any]] = []
        with self._lock:
            pipeline = self._owned.get(key)
            if pipeline is None:
                stale = [
                    self._owned.pop(name) for name in list(self._owned) if name.startswith("token_proxy:")
                ]
                transport = RequestsTransport(
                    session=token_proxy_session(request.tls_ca, request.tls_server_name),
                    session_owner=True,
                    use_env_settings=False,
                )
                pipeline = self._owned[key] = Pipeline(transport=transport, policies=self._policies)
        for old in stale:
            with contextlib.suppress(Exception):
                old.__exit__()
        return pipeline

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
                    proxied = key == "proxied"
                    transport = RequestsTransport(
                        session=watched_session(trust_env=proxied),
                        session_owner=True,
                        use_env_settings=proxied,
                        **_transport_kwargs(self._kwargs),
                    )
                pipeline = self._owned[key] = Pipeline(transport=transport, policies=self._policies)
        return pipeline

    def close(self) -> None:
        """End the refreshes this credential runs beside its callers (waiting at most CLOSE_WAIT for them), then
        close our pipelines (made again if the credential is used after) and a supplied transport."""
        if os.getpid() != self._pid:
            self._forget_inherited_pipelines()
        with self._lock:
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        self.settle(CLOSE_WAIT)
        with self._lock:
            owned = list(self._owned.values())
            self._owned.clear()
        for pipeline in owned:
            pipeline.__exit__()
        if self._user_pipeline is not None:
            self._user.closed = True
            self._user_pipeline.__exit__()


def _transport_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs[key] for key in ("connection_verify", "connection_cert") if key in kwargs}
