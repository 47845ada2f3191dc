"""What both drivers do alike (msi_credential/_transport/sync.py with requests, aio.py with aiohttp): one body
runs through the sync and the async credential (the ``face`` fixture) against loopback servers that record the
request bytes or answer as no HTTP server would, or against the emulator. The soak test (mark ``soak``) runs
threads of the sync driver and tasks of the async one together for about a minute."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import os
import socket
import threading
import time
import tracemalloc
import zlib
from typing import Any, Optional

import pytest
from azure.core.pipeline.policies import AsyncHTTPPolicy, HTTPPolicy

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential
from msi_credential.emulator import Fault

from ..conftest import FIGURES
from .support import (
    CLIENT_A,
    SCOPE,
    Clock,
    app_service_environ,
    assert_secret_absent,
    environ_for,
    http_answer,
    log_text,
    proxy_everything,
    read_request,
    token_body,
    until,
    until_async,
    with_a_cached_token,
)

# ------------------------------------------------------------------------------------ the request on the wire


EXPECTED_QUERY = {
    "imds": b"/metadata/identity/oauth2/token?api-version=2018-02-01&resource={resource}&client_id="
    + CLIENT_A.encode(),
    "app_service": b"/msi/token?api-version=2019-08-01&resource={resource}&client_id=" + CLIENT_A.encode(),
    "machine_learning": b"/msi/token?api-version=2017-09-01&resource={resource}&clientid="
    + CLIENT_A.encode(),
}


@pytest.mark.parametrize("source", ["imds", "app_service", "machine_learning"])
@pytest.mark.parametrize(
    ("scope", "encoded"),
    [
        ("https://vault.azure.net#/.default", b"https://vault.azure.net%23"),
        (
            "https://storage.azure.com&client_id=other/.default",
            b"https://storage.azure.com%26client_id%3Dother",
        ),
        ("https://a.example/x+y/.default", b"https://a.example/x%2By"),
        ("https://a.example/%23/.default", b"https://a.example/%2523"),
        ("https://a.example/caf\u00e9;v=1/.default", b"https://a.example/caf%C3%A9%3Bv%3D1"),
    ],
)
def test_every_query_value_is_percent_encoded_on_the_wire(
    face: Any, capturing_server: Any, source: str, scope: str, encoded: bytes
) -> None:
    """A scope cannot cut off or inject parameters: the exact request line, on both faces."""
    server = capturing_server(lambda head: http_answer(token_body()))
    credential = face.credential(_environ=environ_for(source, server.port), client_id=CLIENT_A)

    credential.get_token(scope)

    expected = EXPECTED_QUERY[source].replace(b"{resource}", encoded)
    assert server.request_lines == [b"GET " + expected + b" HTTP/1.1"]


# ---------------------------------------------------------------------------- answers the drivers cannot read


def test_endpoint_that_accepts_and_never_answers_times_out_and_is_retried(face: Any, raw_server: Any) -> None:
    server = raw_server(lambda connection: (read_request(connection), server.stopping.wait(30)))
    credential = face.credential(_environ=app_service_environ(server.port), read_timeout=0.3, retry_total=1)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert face.sleeps == [1.0]  # the timeout was retried once, by the injected sleeper
    assert server.connections == 2


def test_truncated_body_is_a_typed_error_and_the_credential_recovers(face: Any, raw_server: Any) -> None:
    whole = b'{"access_token": "whole-token", "expires_in": 3600}'
    answers = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"access_token": "abc"',
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(whole), whole),
    ]

    def answer(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(
            answers.pop(0) if answers else b"HTTP/1.1 500 Unexpected\r\nContent-Length: 0\r\n\r\n"
        )
        connection.close()

    server = raw_server(answer)
    credential = face.credential(_environ=app_service_environ(server.port), retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert credential.get_token(SCOPE).token == "whole-token"  # the next call gets a token
    assert server.connections == 2


@pytest.mark.parametrize("source", ["app_service", "cloud_shell", "machine_learning", "azure_arc"])
def test_connection_reset_is_retried_then_a_typed_error(
    face: Any, emulator_factory: Any, source: str
) -> None:
    emulator = emulator_factory(source)
    emulator.script(*[Fault(reset=True)] * 4)
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert face.sleeps == [1.0, 2.0, 4.0]
    assert credential.get_token(SCOPE).token  # still usable


def test_an_http_0_9_style_answer_does_not_put_the_token_in_the_error(
    face: Any, capturing_server: Any, caplog: Any
) -> None:
    token = "eyJ0eXAi-http09-token-value-" + "z" * 30
    server = capturing_server(lambda head: json.dumps(token_body(token=token)).encode() + b"\r\n")
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert_secret_absent(caught.value, token)
    assert token not in log_text(caplog)


def test_an_endpoint_that_does_not_answer_is_named_without_the_secret_it_carries(
    face: Any, unused_port: int, caplog: Any
) -> None:
    secret = "endpoint-carried-secret"
    environ = {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{unused_port}/msi/{secret}?key={secret}",
        "IDENTITY_HEADER": secret,
    }
    credential = face.credential(_environ=environ, retry_total=1)
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert f"127.0.0.1:{unused_port}" in str(caught.value)
    assert_secret_absent(caught.value, secret)
    ours = [record for record in caplog.records if record.name.startswith("msi_credential")]
    assert ours  # the retry was logged
    assert all(secret not in f"{record.getMessage()} {record.args!r}" for record in ours)


# ----------------------------------------------------------------------------------------- compressed answers


def _compressed(payload: bytes, encoding: str) -> bytes:
    if encoding == "gzip":
        return gzip.compress(payload)
    return zlib.compress(payload)


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_compressed_answer_gives_the_same_token_as_the_plain_one(
    face: Any, capturing_server: Any, encoding: str
) -> None:
    body = json.dumps(token_body(token="compressed-token-value")).encode()
    answer = _compressed(body, encoding)
    server = capturing_server(lambda head: http_answer(answer, headers={"Content-Encoding": encoding}))
    credential = face.credential(_environ=environ_for("app_service", server.port))

    token = credential.get_token(SCOPE)

    assert token.token == "compressed-token-value"


def _gzip_bomb(decoded_mib: int) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"0" * (1024 * 1024)
    parts = [compressor.compress(block) for _ in range(decoded_mib)]
    parts.append(compressor.flush())
    return b"".join(parts)


def test_a_gzip_bomb_is_response_too_large_with_bounded_memory(face: Any, capturing_server: Any) -> None:
    bomb = _gzip_bomb(256)  # 256 MiB once decoded, about 250 KiB on the wire
    server = capturing_server(lambda head: http_answer(bomb, headers={"Content-Encoding": "gzip"}))
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)
    credential.get_token_info  # noqa: B018 - build everything before measuring

    tracemalloc.start()
    try:
        with pytest.raises(ManagedIdentityError) as caught:
            credential.get_token(SCOPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert caught.value.error_code == "response_too_large"
    assert peak < 24 * 1024 * 1024
    FIGURES.append(f"gzip bomb of 256 MiB ({face.name}): peak traced memory {peak / 2**20:.1f} MiB")


def test_a_corrupt_gzip_body_is_a_transport_failure_not_a_zlib_error(
    face: Any, capturing_server: Any
) -> None:
    answer = gzip.compress(json.dumps(token_body()).encode())[:-12] + b"garbage!garbage!"
    server = capturing_server(lambda head: http_answer(answer, headers={"Content-Encoding": "gzip"}))
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"


# ------------------------------------------------------------------------- the caller's transport and proxies


def _counting_transport(face: Any) -> Any:
    if face.is_async:
        from azure.core.pipeline.transport import AioHttpTransport

        class CountingAsync(AioHttpTransport):  # type: ignore[misc]
            sent = 0

            async def send(self, request: Any, **kwargs: Any) -> Any:
                type(self).sent += 1
                return await super().send(request, **kwargs)

        return CountingAsync()
    from azure.core.pipeline.transport import RequestsTransport

    class Counting(RequestsTransport):  # type: ignore[misc]
        sent = 0

        def send(self, request: Any, **kwargs: Any) -> Any:
            type(self).sent += 1
            return super().send(request, **kwargs)

    return Counting()


def _clear_proxies(monkeypatch: Any) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_the_callers_default_transport_is_used_on_both_faces(
    face: Any, emulator_factory: Any, monkeypatch: Any, caplog: Any
) -> None:
    _clear_proxies(monkeypatch)
    emulator = emulator_factory("app_service")
    transport = _counting_transport(face)
    credential = face.credential(emulator, transport=transport)
    caplog.set_level(logging.WARNING)

    assert credential.get_token(SCOPE).token

    assert type(transport).sent == 1
    assert len(emulator.requests) == 1
    assert not [record for record in caplog.records if record.name == "msi_credential"]


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.1"])
def test_the_callers_transport_is_bypassed_only_where_an_environment_proxy_would_carry_the_secret(
    face: Any, emulator_factory: Any, monkeypatch: Any, caplog: Any, unused_port: int, no_proxy: Optional[str]
) -> None:
    from msi_credential._transport.common import _BYPASS_REASONS

    _clear_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{unused_port}")
    monkeypatch.delenv("no_proxy", raising=False)
    if no_proxy is None:
        monkeypatch.delenv("NO_PROXY", raising=False)
    else:
        monkeypatch.setenv("NO_PROXY", no_proxy)
    emulator = emulator_factory("app_service")
    transport = _counting_transport(face)
    credential = face.credential(emulator, transport=transport)
    caplog.set_level(logging.WARNING)

    assert credential.get_token(SCOPE).token

    warnings = [record.getMessage() for record in caplog.records if record.name == "msi_credential"]
    # requests takes a per-request "no proxy", so the sync face never needs to go around; aiohttp cannot
    bypassed = face.is_async and no_proxy is None
    assert type(transport).sent == (0 if bypassed else 1)
    assert warnings == ([_BYPASS_REASONS["proxy"]] if bypassed else [])
    assert len(emulator.requests) == 1


def test_a_proxy_the_callers_session_was_made_with_never_sees_the_secret(
    face: Any, emulator_factory: Any, monkeypatch: Any, caplog: Any, capturing_server: Any
) -> None:
    """requests' ``session.proxies`` and aiohttp's ``ClientSession(proxy=)``: the token request goes direct on both
    faces (the sync face tells requests "no proxy" per request; aiohttp has no such thing, so the async face goes
    around the caller's transport with a warning), and the proxy neither sees the identity header nor answers."""
    from msi_credential._transport.common import _BYPASS_REASONS

    _clear_proxies(monkeypatch)
    proxy = capturing_server(lambda head: http_answer(token_body("token-from-the-proxy")))
    proxy_url = f"http://127.0.0.1:{proxy.port}"
    emulator = emulator_factory("app_service")
    if face.is_async:
        import aiohttp
        from azure.core.pipeline.transport import AioHttpTransport

        async def make_session() -> Any:
            return aiohttp.ClientSession(proxy=proxy_url)  # aiohttp 3.10+ (the dev extra's floor)

        transport: Any = AioHttpTransport(session=face._run(make_session()), session_owner=True)
    else:
        import requests
        from azure.core.pipeline.transport import RequestsTransport

        requests_session = requests.Session()
        requests_session.proxies = {"http": proxy_url, "https": proxy_url}
        transport = RequestsTransport(session=requests_session, session_owner=True)
    credential = face.credential(emulator, transport=transport)
    caplog.set_level(logging.WARNING)

    token = credential.get_token(SCOPE).token

    assert proxy.request_lines == []  # the request lines only: a failure must not print the identity header
    assert token == emulator.issued_tokens()[-1]
    assert len(emulator.requests) == 1
    warnings = [record.getMessage() for record in caplog.records if record.name == "msi_credential"]
    assert warnings == ([_BYPASS_REASONS["session_proxy"]] if face.is_async else [])


def test_service_fabric_goes_around_the_callers_transport_with_the_same_warning_on_both_faces(
    face: Any, emulator_factory: Any, caplog: Any
) -> None:
    from msi_credential._transport.common import _BYPASS_REASONS

    emulator = emulator_factory("service_fabric")
    transport = _counting_transport(face)
    credential = face.credential(emulator, transport=transport)
    caplog.set_level(logging.WARNING)

    credential.get_token(SCOPE)
    credential.get_token("https://vault.azure.net/.default")

    warnings = [record.getMessage() for record in caplog.records if record.name == "msi_credential"]
    assert warnings == [_BYPASS_REASONS["pin"]]  # once, not per request
    assert type(transport).sent == 0


def test_proxy_variables_are_ignored_for_managed_identity(
    face: Any, emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{unused_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    emulator = emulator_factory("app_service")
    credential = face.credential(emulator)

    assert credential.get_token(SCOPE).token
    assert len(emulator.requests) == 1


def test_service_fabric_never_goes_through_an_environment_proxy(
    face: Any, emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    emulator = emulator_factory("service_fabric")
    proxy_everything(monkeypatch, unused_port)  # a proxy would skip the pin; here it would also refuse
    credential = face.credential(emulator)

    assert credential.get_token(SCOPE).token
    assert len(emulator.requests) == 1


def test_using_the_credential_after_close_with_a_callers_transport_is_a_typed_error(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("app_service")
    credential = face.credential(emulator, transport=_counting_transport(face))
    credential.get_token(SCOPE)
    credential.close()

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token("https://vault.azure.net/.default")

    assert caught.value.error_code == "credential_closed"
    assert len(emulator.requests) == 1


# ------------------------------------------------------------------------------- refreshes beside the callers


def test_advisory_window_refreshes_once_beside_the_callers(face: Any, emulator_factory: Any) -> None:
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, face.credential)

    clock.now = old.refresh_on + 1
    during = credential.get_token(SCOPE)  # due: returned at once, the refresh runs beside it
    credential.settle()
    new = credential.get_token(SCOPE)
    again = credential.get_token(SCOPE)

    assert during.token == old.token
    assert new.token != old.token
    assert again.token == new.token
    assert len(emulator.requests) == 2


def test_the_caller_that_finds_the_token_due_is_not_held_by_its_refresh_and_close_ends_it(
    face: Any, emulator_factory: Any
) -> None:
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, face.credential)
    emulator.script(Fault(200, delay=120))  # the refresh's answer would take two minutes

    clock.now = old.refresh_on + 1
    during = credential.get_token(SCOPE)
    in_flight = credential.refreshing()
    if face.is_async:
        face._run(until_async(lambda: len(emulator.requests) == 2))
    else:
        until(lambda: len(emulator.requests) == 2)  # the refresh waits for its answer
    credential.close()

    assert during.token == old.token
    assert in_flight == 1  # it returned while its refresh was in flight
    credential.settle()
    assert credential.refreshing() == 0
    assert not [thread for thread in threading.enumerate() if thread.name == "msi-credential-refresh"]
    assert not credential.inner._bucket.flights and not credential.inner._bucket.async_flights
    assert credential.get_token(SCOPE).token == old.token  # usable after close(): a new refresh starts
    credential.settle()
    assert credential.get_token(SCOPE).token != old.token
    assert len(emulator.requests) == 3


def test_close_called_from_inside_a_refresh_beside_the_callers_closes_and_ends_that_refresh(
    face: Any, emulator_factory: Any
) -> None:
    """A policy (or hook) that closes its credential while a refresh runs beside the callers runs in that refresh:
    close() must not wait for the very thread or task it is called from. It returns, the refresh it was called
    from ends, and the credential stays usable."""
    armed = [False]
    outcome: list[object] = []
    holder: list[Any] = []

    def closing() -> bool:
        if not armed[0]:
            return False
        armed[0] = False
        return True

    if face.is_async:

        class AsyncCloser(AsyncHTTPPolicy):  # type: ignore[type-arg]
            async def send(self, request: Any) -> Any:
                if closing():
                    try:
                        await holder[0].inner.close()
                        outcome.append("returned")
                    except BaseException as error:
                        outcome.append(error)
                        raise
                return await self.next.send(request)

        policy: Any = AsyncCloser()
    else:

        class Closer(HTTPPolicy):  # type: ignore[type-arg]
            def send(self, request: Any) -> Any:
                if closing():
                    try:
                        holder[0].inner.close()
                        outcome.append("returned")
                    except BaseException as error:
                        outcome.append(error)
                        raise
                return self.next.send(request)

        policy = Closer()
    _, clock, credential, old = with_a_cached_token(
        emulator_factory, face.credential, per_call_policies=[policy]
    )
    holder.append(credential)

    clock.now = old.refresh_on + 1
    armed[0] = True
    assert credential.get_token(SCOPE).token == old.token  # its refresh, beside it, closes the credential
    credential.settle()

    assert outcome == ["returned"]
    assert credential.refreshing() == 0
    assert not credential.inner._bucket.flights
    assert all(task.done() for task in credential.inner._bucket.async_flights.values())
    # the closing refresh stored nothing; a new one starts
    assert credential.get_token(SCOPE).token == old.token
    credential.settle()
    assert credential.get_token(SCOPE).token != old.token


def test_callers_in_the_advisory_window_start_one_refresh_per_token(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    emulator.delay = 0.05
    clock = Clock()
    credential = face.credential(emulator, _clock=clock, share_cache=True)
    other = face.credential(emulator, _clock=clock, share_cache=True)  # shares the bucket
    old = credential.get_token_info(SCOPE)
    clock.now = old.refresh_on + 1

    if face.is_async:

        async def many() -> list[Any]:
            calls = [c.inner.get_token(SCOPE) for c in (credential, other) for _ in range(8)]
            return list(await asyncio.gather(*calls))

        tokens = face._run(many())
    else:
        barrier = threading.Barrier(16)
        tokens = []

        def work(c: Any) -> None:
            barrier.wait()
            tokens.append(c.get_token(SCOPE))

        threads = [threading.Thread(target=work, args=(c,)) for c in (credential, other) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    credential.settle()
    other.settle()

    assert len(tokens) == 16 and {token.token for token in tokens} == {old.token}
    assert len(emulator.requests) == 2  # the first token and one refresh
    assert credential.get_token(SCOPE).token != old.token


# ------------------------------------------------- soak: threads and tasks for a minute under random failures


LIFETIME = 3


@pytest.mark.soak
def test_soak_threads_and_tasks_under_random_failures(emulator_factory: Any) -> None:
    duration = float(os.environ.get("MSI_SOAK_SECONDS", "45"))
    emulator = emulator_factory("app_service", token_lifetime=LIFETIME)
    emulator.fail_randomly(0.2, (500, 429), seed=20261128)
    options = {"_environ": emulator.environ, "retry_total": 5, "retry_backoff_factor": 0.05}
    stop_at = time.monotonic() + duration
    lock = threading.Lock()
    calls = 0
    errors_while_valid: list[str] = []
    errors_after_expiry: list[str] = []
    expired_tokens_returned = 0
    newest_expiry = 0.0

    def record(called_at: float, token: Any = None, error: ManagedIdentityError | None = None) -> None:
        """``called_at``: the wall clock before the call. A token counts as expired only if it had expired before the
        call began: one that expires while its caller's thread waits for a core (a loaded machine) was valid when the
        credential handed it out."""
        nonlocal calls, expired_tokens_returned, newest_expiry
        now = time.time()
        with lock:
            calls += 1
            if error is not None:
                (errors_while_valid if now < newest_expiry else errors_after_expiry).append(error.error_code)
                return
            newest_expiry = max(newest_expiry, token.expires_on)
            if token.expires_on <= called_at:
                expired_tokens_returned += 1

    credential = ManagedIdentityCredential(**options)

    def thread_loop() -> None:
        while time.monotonic() < stop_at:
            called_at = time.time()
            try:
                record(called_at, credential.get_token(SCOPE))
            except ManagedIdentityError as error:
                record(called_at, error=error)
            time.sleep(0.001)

    async def task_loop(async_credential: Any) -> None:
        while time.monotonic() < stop_at:
            called_at = time.time()
            try:
                record(called_at, await async_credential.get_token(SCOPE))
            except ManagedIdentityError as error:
                record(called_at, error=error)
            await asyncio.sleep(0.001)

    async def tasks_main() -> None:
        async with AsyncCredential(**options) as async_credential:
            await asyncio.gather(*(task_loop(async_credential) for _ in range(200)))

    threads = [threading.Thread(target=thread_loop) for _ in range(32)]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks_main(),)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 120)
    elapsed = time.monotonic() - started
    credential.close()

    requests = emulator.requests_received
    periods = elapsed / (LIFETIME / 2)
    FIGURES.append(
        f"soak: {elapsed:.1f} s, {calls} calls, {requests} requests ({emulator.random_failures} failed on purpose), "
        f"{emulator.tokens_issued} tokens, {periods:.0f} refresh periods, "
        f"errors while a valid token existed: {len(errors_while_valid)}, after expiry: {len(errors_after_expiry)}, "
        f"expired tokens returned: {expired_tokens_returned}"
    )
    assert not any(thread.is_alive() for thread in threads)
    assert errors_while_valid == []
    assert expired_tokens_returned == 0
    assert calls > 100 * requests
    # integer expiry seconds shorten some periods, and the thread and task flights may each refresh once
    assert emulator.tokens_issued <= 4 * periods + 5
