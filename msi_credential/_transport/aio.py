"""The async driver: performs the engine's effects with an azure-core AsyncPipeline and asyncio.sleep.

aiohttp is used when the ``aio`` extra is installed; otherwise azure-core's requests-in-a-thread transport.
Service Fabric's pin is checked on every new TLS connection before a request byte is written, in both cases.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import inspect
import logging
import os
import ssl
import sys
from collections.abc import Awaitable, Coroutine
from contextvars import ContextVar
from typing import Any, Callable, Optional, TypeVar

from azure.core.credentials import AccessTokenInfo
from azure.core.pipeline import AsyncPipeline
from azure.core.pipeline.transport import AsyncHttpTransport

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
from . import machine_cache
from .common import (
    NO_PROXIES,
    BodyReader,
    UndecodableBody,
    UserTransport,
    consumed_body,
    environment_proxy_applies,
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
from .sync import pinned_session, token_proxy_session, watched_session

_LOGGER = logging.getLogger("msi_credential")
_T = TypeVar("_T")

try:
    import aiohttp
except ImportError:  # pragma: no cover - exercised by the no-aiohttp test in a subprocess
    aiohttp = None  # type: ignore[assignment]


def aiohttp_available() -> bool:
    return aiohttp is not None


def _default_transport(*, use_env_settings: bool, **kwargs: Any) -> AsyncHttpTransport[Any, Any]:
    if aiohttp is not None:
        from azure.core.pipeline.transport import AioHttpTransport

        # auto_decompress off: the body is decoded once, by us, bounded (common.BodyReader)
        session = aiohttp.ClientSession(trust_env=use_env_settings, auto_decompress=False)
        # aiohttp silently resends an idempotent request once after a dropped connection; the engine's retry
        # schedule decides retries, the same on both faces.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        native: AsyncHttpTransport[Any, Any] = AioHttpTransport(
            session=session, session_owner=True, use_env_settings=use_env_settings, **kwargs
        )
        return native
    from azure.core.pipeline.transport import AsyncioRequestsTransport

    # our session (no retries, no redirect handling: the engine decides both), as on the sync face
    session = watched_session(trust_env=use_env_settings)
    fallback: AsyncHttpTransport[Any, Any] = AsyncioRequestsTransport(
        session=session, session_owner=True, use_env_settings=use_env_settings, **kwargs
    )
    return fallback


def _sha1_pin(sha1: str) -> Any:
    """An aiohttp fingerprint check for SHA-1, which aiohttp's own Fingerprint refuses to take."""
    assert aiohttp is not None

    class _Mismatch(aiohttp.ServerFingerprintMismatch):
        def __str__(self) -> str:
            return "server certificate fingerprint does not match the pinned thumbprint"

    class _Sha1Pin(aiohttp.Fingerprint):
        def __init__(self, expected: bytes) -> None:  # bypasses the base class's refusal of SHA-1
            self._hashfunc = hashlib.sha1
            self._fingerprint = expected

        def check(self, transport: asyncio.Transport) -> None:
            ssl_object = transport.get_extra_info("ssl_object")
            certificate = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
            got = hashlib.sha1(certificate).digest() if certificate else b""  # noqa: S324 - a pin, not a MAC
            if not hmac.compare_digest(got, self._fingerprint):
                # aiohttp closes the transport on this error, before any request byte is written
                peer = transport.get_extra_info("peername") or ("", 0)
                raise _Mismatch(self._fingerprint, got, peer[0], peer[1])

    return _Sha1Pin(bytes.fromhex(sha1))


async def single_flight(
    bucket: Bucket,
    resource: str,
    request: Callable[[], Coroutine[Any, Any, AccessTokenInfo]],
    still_valid: Callable[[], Optional[AccessTokenInfo]],
    limit: Optional[JoinLimit] = None,
) -> AccessTokenInfo:
    """Tasks of one event loop that miss the cache for one resource share one request (a task of its own).

    Each caller awaits it through a shield: a cancelled caller does not cancel the request for the others.
    A caller that finds a refresh in flight while the cached token may still be served takes the cached token.
    A joining caller waits at most its own ``limit`` (its call's ``timeout=``). A caller whose flight was a refresh
    beside the callers that its credential's close() cancelled asks again.
    """
    deadline = None if limit is None else limit.deadline()
    loop = asyncio.get_running_loop()
    while True:
        task: Optional[asyncio.Task[AccessTokenInfo]] = bucket.async_flights.get(resource)
        if task is not None and (task.done() or task.get_loop() is not loop):
            task = None
        joining = task is not None
        if task is None:
            task = loop.create_task(request())
            bucket.async_flights[resource] = task
            task.add_done_callback(functools.partial(_flight_done, bucket.async_flights, resource))
        else:
            cached = still_valid()
            if cached is not None:
                return cached
        try:
            if joining and limit is not None and deadline is not None:
                return await _join(task, limit, deadline)
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.cancelled() or _being_cancelled():
                raise
            # the flight was a refresh beside the callers, ended by its credential's close(): ask again


def _being_cancelled() -> bool:
    """Whether the current task has been asked to cancel (known from Python 3.11; before, assumed not)."""
    current = asyncio.current_task()
    cancelling = getattr(current, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


async def _join(task: asyncio.Task[AccessTokenInfo], limit: JoinLimit, deadline: float) -> AccessTokenInfo:
    """Wait for another caller's flight, at most until this call's own deadline; leaving does not cancel it."""
    while not task.done():
        await asyncio.wait((task,), timeout=limit.remaining(deadline))
    return task.result()


def _flight_done(flights: dict[str, Any], resource: str, task: asyncio.Task[AccessTokenInfo]) -> None:
    if flights.get(resource) is task:
        del flights[resource]
    if not task.cancelled():
        task.exception()  # retrieved here, so a flight whose callers all left does not warn


async def off_loop(work: Callable[..., _T], *args: Any) -> _T:
    """Blocking file work in the loop's executor, off the event loop's thread. At interpreter exit (an ``atexit``
    handler) no executor thread can start any more: then the work runs inline, as on the sync face (small, bounded
    file reads; a machine cache lock wait is bounded too)."""
    loop = asyncio.get_running_loop()
    try:
        pending = loop.run_in_executor(None, work, *args)
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown" and its kin
        return work(*args)
    return await pending


class _ExecutorGone(Exception):
    """The transport needed the loop's executor, which the exiting interpreter refuses."""


def _refused_by_exiting_interpreter(error: BaseException) -> bool:
    # concurrent.futures at interpreter exit: "cannot schedule new futures after interpreter shutdown", or, when it
    # is first imported then, "can't register atexit after shutdown"
    return isinstance(error, RuntimeError) and "after" in str(error) and "shutdown" in str(error)


async def read_body(http_response: Any, reader: BodyReader) -> None:
    """Feed the response's body to ``reader``: streamed when the response can stream it (stopping at the size
    bound), else what ``body()`` or ``text()`` returns, after ``load_body()`` where the response has it (azure-core's
    older responses, test doubles); the same order as the sync driver's."""
    consumed = consumed_body(http_response)
    if consumed is not None:
        reader.feed(consumed)
        return
    stream = stream_method(http_response)
    if stream is not None:
        async for chunk in stream():
            if reader.feed(chunk):
                break
        return
    if callable(getattr(type(http_response), "load_body", None)):
        await http_response.load_body()
    for name, method in whole_body_methods(http_response):
        value = method()
        if inspect.isawaitable(value):
            value = await value
        data = whole_body(name, value)
        if data is not None:
            reader.feed(data)
            return
    raise unreadable_response(http_response)


# Seconds close() waits, in all, for the refreshes it cancels.
CLOSE_WAIT = 1.0
# The refresh beside the callers whose task (or a task it started) is running, if any.
_REFRESH: ContextVar[Optional[asyncio.Task[AccessTokenInfo]]] = ContextVar("msi_refresh", default=None)


class AsyncDriver:
    """Runs engine flows in the running event loop.

    The transports it owns are made for one flow and closed at its end: token requests are rare (the cache serves
    the rest), and a connection pool bound to one event loop would break the next ``asyncio.run``. A supplied
    transport is used for every flow and closed by ``close()`` (as azure-identity does), except where it could
    not keep a secret safe: Service Fabric always goes over a connection of our own, pinned to its thumbprint, and
    an aiohttp transport that trusts the environment's proxies, or whose session was made with ``proxy=``, is not
    used toward managed identity endpoints (aiohttp has no per-request way to skip either).
    """

    def __init__(
        self,
        *,
        transport: Optional[AsyncHttpTransport[Any, Any]] = None,
        sleep: Callable[[float], Awaitable[Any]],
        **kwargs: Any,
    ) -> None:
        self._sleep = sleep
        self._kwargs = kwargs
        self._policies = build_policies(asynchronous=True, **kwargs)
        self._user_pipeline: Optional[AsyncPipeline[Any, Any]] = None
        if transport is not None:
            self._user_pipeline = AsyncPipeline(transport=transport, policies=self._policies)
        self._user = UserTransport(transport)
        self._user_tuple_timeouts = transport is not None and _takes_tuple_timeouts(transport)
        self._proxy_context: Optional[tuple[Optional[str], ssl.SSLContext]] = None
        # refreshes beside the callers that this credential started: tasks, each of the loop that started it
        # (held here so that none is garbage collected while it runs)
        self._jobs: set[asyncio.Task[AccessTokenInfo]] = set()
        self._pid = os.getpid()

    def refresh_beside(self, bucket: Bucket, resource: str, flow: Callable[[], Flow]) -> None:
        """Start the flow as a task of the running loop, as the token's single flight, unless one of this loop is
        in flight. The caller does not wait for it; waiters that arrive meanwhile (past the mandatory window) join
        it; close() cancels it; it never outlives its loop (asyncio.run cancels it, and a later call on another
        loop starts its own)."""
        loop = asyncio.get_running_loop()
        if os.getpid() != self._pid:  # a forked child: the parent's tasks are not ours to run
            self._jobs = set()
            self._pid = os.getpid()
        task: Optional[asyncio.Task[AccessTokenInfo]] = bucket.async_flights.get(resource)
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        # list(): a copy made at once; other threads' loops add and discard their own tasks meanwhile
        for stale in [job for job in list(self._jobs) if job.get_loop().is_closed()]:
            self._jobs.discard(stale)  # its loop closed without running it to its end: nothing will
        task = loop.create_task(self._refresh(flow))
        # A loop the application closes with this refresh pending (run_until_complete, then close) takes it along:
        # that ends it as close() would, so asyncio need not report a destroyed pending task.
        task._log_destroy_pending = False  # type: ignore[attr-defined]
        bucket.async_flights[resource] = task
        task.add_done_callback(functools.partial(_flight_done, bucket.async_flights, resource))
        self._jobs.add(task)
        task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[AccessTokenInfo]) -> None:
        self._jobs.discard(task)  # the set of now: close() may have replaced the one the task was added to

    async def _refresh(self, flow: Callable[[], Flow]) -> AccessTokenInfo:
        # in this task's context, and so in the tasks it starts (asyncio.wait_for's, before Python 3.12)
        _REFRESH.set(asyncio.current_task())
        loop = asyncio.get_running_loop()
        try:
            return await self.run(flow())
        except Exception as error:
            if loop.is_closed():
                # The application closed the loop with this refresh pending, and it is being closed with it (some
                # await below it could not end quietly): it ends as a closed coroutine should, not as a failure.
                raise GeneratorExit from None
            _LOGGER.warning(  # without its message: only the code or the type
                "a token refresh running beside the callers failed (%s)",
                getattr(error, "error_code", None) or type(error).__name__,
            )
            raise

    async def settle(self) -> None:
        """Wait for the refreshes this credential runs beside its callers in the running loop to end."""
        loop = asyncio.get_running_loop()
        mine = [task for task in list(self._jobs) if task.get_loop() is loop and not task.done()]
        if mine:
            await asyncio.wait(mine)

    def token_proxy_context(self, ca_pem: Optional[str]) -> ssl.SSLContext:
        """The AKS token proxy's TLS context for this CA, made again only when the CA changes."""
        cached = self._proxy_context
        if cached is None or cached[0] != ca_pem:
            cached = self._proxy_context = (ca_pem, token_proxy_context(ca_pem))
        return cached[1]

    async def run(self, flow: Flow) -> AccessTokenInfo:
        """Drive a flow to its end. A cancellation abandons the flow; the credential stays usable."""
        pipelines = _FlowPipelines(self)
        result: EffectResult = None
        # machine cache locks this flow holds: released when it ends, however it ends (a cancelled call too)
        held = machine_cache.Holdings()
        try:
            while True:
                try:
                    effect = flow.send(result)
                except StopIteration as stop:
                    value: AccessTokenInfo = stop.value
                    return value
                if isinstance(effect, Send):
                    result = await self.send(effect.request, pipelines)
                elif isinstance(effect, Sleep):
                    await self._sleep(effect.seconds)
                    result = None
                elif isinstance(effect, FILE_READS):
                    # never in the event loop's thread: a file read can block (a FIFO, a slow mount)
                    result = await off_loop(read_file, effect)
                elif isinstance(effect, MACHINE_EFFECTS):
                    # file work and a bounded wait for another process's lock: never in the loop's thread
                    result = await off_loop(machine_cache.perform, effect, held)
                else:  # pragma: no cover - the engine yields nothing else
                    raise TypeError(f"unknown effect {effect!r}")
        finally:
            machine_cache.release_all(held)
            flow.close()
            await pipelines.close()

    async def send(self, request: Request, pipelines: _FlowPipelines) -> Response | TransportFailure:
        """One attempt, bounded in all by the request's budget (a slow body cannot hold the caller)."""
        attempt: Any = self._send(request, pipelines)
        if _REFRESH.get() is not None and sys.version_info < (3, 12):
            # before 3.12 wait_for runs the attempt as a task of its own: like the refresh's, it goes quietly with a
            # loop the application closes while it is pending (refresh_beside)
            attempt = asyncio.ensure_future(attempt)
            attempt._log_destroy_pending = False
        try:
            return await asyncio.wait_for(attempt, request.budget)
        except asyncio.TimeoutError:
            return TransportFailure("read_timeout", "no complete answer before the deadline")
        except _ExecutorGone:
            return self._send_at_exit(request)

    def _send_at_exit(self, request: Request) -> Response | TransportFailure:
        """At interpreter exit (an ``atexit`` handler) aiohttp cannot start the helper threads it uses for DNS and
        netrc: this one request goes the sync face's way, in this thread, as the sync credential would send it."""
        if self._user_pipeline is not None and not (request.token_proxy or request.pin_sha1):
            raise failed(
                "the async credential cannot send through the transport it was given at interpreter exit (an "
                "atexit handler): the transport needs a worker thread, which can no longer start; use the sync "
                "credential there",
                error_code="interpreter_exiting",
            )
        from .sync import SyncDriver

        driver = SyncDriver(sleep=lambda seconds: None, **self._kwargs)
        try:
            return driver.send(request)
        finally:
            driver.close()

    async def _send(self, request: Request, pipelines: _FlowPipelines) -> Response | TransportFailure:
        pipeline, extra = pipelines.for_request(request)
        try:
            pipeline_response = await pipeline.run(
                to_http_request(request),
                stream=True,
                **extra,
            )
            http_response = pipeline_response.http_response
            headers = {key.lower(): value for key, value in http_response.headers.items()}
            reader = BodyReader(headers)
            try:
                await read_body(http_response, reader)
                body = reader.finish()
            except UndecodableBody:
                return TransportFailure("read", "the body is not valid for its Content-Encoding")
            finally:
                close = getattr(http_response, "close", None)
                if callable(close):  # azure-core's older responses and test doubles may have none
                    closing = close()
                    if inspect.isawaitable(closing):
                        await closing
            return Response(status=http_response.status_code, headers=headers, body=body)
        except ManagedIdentityError:
            raise  # a supplied transport's response we cannot read (read_body): not a network failure
        except Exception as error:
            if _refused_by_exiting_interpreter(error):
                raise _ExecutorGone from error
            # aiohttp's payload errors are not all AzureErrors
            failure = transport_failure(error, *((aiohttp.ClientError,) if aiohttp is not None else ()))
            if failure is None:
                raise
            return failure

    async def close(self) -> None:
        """Cancel the refreshes this credential runs beside its callers (those of the running loop are awaited for
        at most CLOSE_WAIT; another loop's are cancelled in their loop), then close a supplied transport."""
        jobs = list(self._jobs) if os.getpid() == self._pid else []
        loop = asyncio.get_running_loop()
        # set when close() runs inside one of those refreshes (a policy of its request)
        current = _REFRESH.get()
        # that one stays a job until it has ended (settle() waits for it: before Python 3.12 its cancellation
        # takes a few turns of the loop, through asyncio.wait_for's own task)
        self._jobs = {current} if current is not None and current in jobs else set()
        mine = []
        for task in jobs:
            other = task.get_loop()
            if task.done() or other.is_closed() or task is current:
                continue
            if other is loop:
                task.cancel()
                mine.append(task)
            else:
                other.call_soon_threadsafe(task.cancel)
        if mine:
            await asyncio.wait(mine, timeout=CLOSE_WAIT)
        if self._user_pipeline is not None:
            self._user.closed = True
            await self._user_pipeline.__aexit__()
        if current is not None and current in jobs:
            # called from that refresh itself (a policy of its pipeline): it ends at its next await, after close()
            current.cancel()


class _FlowPipelines:
    """The pipelines one flow uses, made on first need and closed when the flow ends."""

    def __init__(self, driver: AsyncDriver) -> None:
        self._driver = driver
        self._owned: dict[str, tuple[AsyncPipeline[Any, Any], dict[str, Any]]] = {}

    def for_request(self, request: Request) -> tuple[AsyncPipeline[Any, Any], dict[str, Any]]:
        """The caller's pipeline when one was given, except where it would carry the secret past the pin or
        through an environment proxy (then ours, with a warning: common.UserTransport)."""
        driver = self._driver
        if request.token_proxy:
            driver._user.warn_once("token_proxy")
            digest = hashlib.sha256((request.tls_ca or "").encode("utf-8")).hexdigest()
            key = f"token_proxy:{digest}:{request.tls_server_name or ''}"
        elif request.pin_sha1 is not None:
            driver._user.warn_once("pin")
            key = "pinned"
        elif driver._user_pipeline is not None:
            driver._user.check_open()
            user = driver._user.transport
            if (
                not request.use_proxies
                and _proxies_from_environment(user)
                and environment_proxy_applies(request.url)
            ):
                driver._user.warn_once("proxy")
            elif not request.use_proxies and _session_proxy(user):
                driver._user.warn_once("session_proxy")
            else:
                extra: dict[str, Any] = (
                    user_proxies(driver._kwargs) if request.use_proxies else {"proxies": dict(NO_PROXIES)}
                )
                extra.update(_timeouts(request, driver._user_tuple_timeouts))
                return driver._user_pipeline, extra
            key = "direct"
        else:
            key = "proxied" if request.use_proxies else "direct"
        owned = self._owned.get(key)
        if owned is None:
            owned = self._make(key, request)
            self._owned[key] = owned
        return owned

    def _make(self, key: str, request: Request) -> tuple[AsyncPipeline[Any, Any], dict[str, Any]]:
        driver = self._driver
        extra: dict[str, Any] = {}
        if key.startswith("token_proxy:"):
            # no environment proxies, only the cluster's CA, and the SNI name sent and verified
            if aiohttp is not None:
                transport = _default_transport(use_env_settings=False)
                extra = {"ssl": driver.token_proxy_context(request.tls_ca)}
                if request.tls_server_name:
                    extra["server_hostname"] = request.tls_server_name
            else:
                from azure.core.pipeline.transport import AsyncioRequestsTransport

                transport = AsyncioRequestsTransport(
                    session=token_proxy_session(request.tls_ca, request.tls_server_name),
                    session_owner=True,
                    use_env_settings=False,
                )
        elif key == "pinned":
            assert request.pin_sha1 is not None
            if aiohttp is not None:
                transport = _default_transport(use_env_settings=False)
                extra = {"ssl": _sha1_pin(request.pin_sha1)}
            else:
                from azure.core.pipeline.transport import AsyncioRequestsTransport

                transport = AsyncioRequestsTransport(
                    session=pinned_session(request.pin_sha1), session_owner=True, use_env_settings=False
                )
                extra = {"connection_verify": False}
        else:
            transport = _default_transport(
                use_env_settings=key == "proxied", **_transport_kwargs(driver._kwargs)
            )
        if key == "proxied":
            extra.update(user_proxies(driver._kwargs))
        extra.update(_timeouts(request, _takes_tuple_timeouts(transport)))
        return AsyncPipeline(transport=transport, policies=driver._policies), extra

    async def close(self) -> None:
        owned = list(self._owned.values())
        self._owned.clear()
        for pipeline, _ in owned:
            try:
                await pipeline.__aexit__()
            except Exception:
                _LOGGER.debug("closing a token request's pipeline failed", exc_info=True)


def _proxies_from_environment(transport: Any) -> bool:
    """True for an aiohttp transport whose session reads proxies from the environment: aiohttp has no
    per-request way to skip them. requests-based transports take a per-request "no proxy", so never."""
    if aiohttp is None:
        return False
    from azure.core.pipeline.transport import AioHttpTransport

    if not isinstance(transport, AioHttpTransport):
        return False
    session = getattr(transport, "session", None)
    if session is not None:
        return bool(session.trust_env)
    return bool(transport._use_env_settings)


def _session_proxy(transport: Any) -> bool:
    """True for an aiohttp transport whose session was made with ``proxy=`` (aiohttp 3.10+): aiohttp sends every
    request through it, and a request's ``proxy=None`` means "the session's". requests-based transports take a
    per-request "no proxy" that overrides a session's proxies, so never."""
    if aiohttp is None:
        return False
    from azure.core.pipeline.transport import AioHttpTransport

    if not isinstance(transport, AioHttpTransport):
        return False
    session = getattr(transport, "session", None)
    return getattr(session, "_default_proxy", None) is not None


def _takes_tuple_timeouts(transport: Any) -> bool:
    """azure-core's requests-in-a-thread transport takes (connect, read) as ``connection_timeout`` only."""
    from azure.core.pipeline.transport import AsyncioRequestsTransport

    return isinstance(transport, AsyncioRequestsTransport)


def _timeouts(request: Request, as_tuple: bool) -> dict[str, Any]:
    if as_tuple:
        return {"connection_timeout": (request.connect_timeout, request.read_timeout)}
    return {"connection_timeout": request.connect_timeout, "read_timeout": request.read_timeout}


def _transport_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {key: kwargs[key] for key in ("connection_verify", "connection_cert") if key in kwargs}
