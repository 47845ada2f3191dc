"""Faulty endpoints and networks: fail fast off Azure, bounded waits, typed errors, and a usable credential after."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
from azure.core.credentials import AccessToken

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential.emulator import Fault

from .skips import skip_or_fail_in_ci

SCOPE = "https://storage.azure.com/.default"


class RawServer:
    """A loopback TCP server whose every connection is handled by ``behave(connection)``: for answers no
    HTTP server would give (truncated bodies, trickling bodies, silence)."""

    def __init__(self, behave: Callable[[socket.socket], None]) -> None:
        self._behave = behave
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.connections += 1
            self._accepted.append(connection)
            worker = threading.Thread(target=self._run, args=(connection,), daemon=True)
            self._threads.append(worker)
            worker.start()

    def _run(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self._behave(connection)

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        for connection in self._accepted:
            with contextlib.suppress(OSError):
                connection.close()
        self._thread.join(2)

    @property
    def stopping(self) -> threading.Event:
        return self._stop


def _read_request(connection: socket.socket) -> None:
    connection.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(4096)
        if not chunk:
            return
        data += chunk


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    servers: list[RawServer] = []

    def start(behave: Callable[[socket.socket], None]) -> RawServer:
        server = RawServer(behave)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def app_service_environ(port: int) -> dict[str, str]:
    return {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/msi/token",
        "IDENTITY_HEADER": "header-secret-value",
    }


# --------------------------------------------------------------------------------------------- fail fast off Azure


def test_nothing_listening_at_imds_in_a_chain_is_unavailable_on_the_first_failure_without_a_retry(
    face: Any, unused_port: int, monkeypatch: Any, in_credential_chain: None
) -> None:
    """No variables, IMDS address closed, inside a credential chain: unavailable on the first failure, no retry,
    no sleep."""
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{unused_port}")
    credential = face.credential(_environ={})

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "imds_unreachable"
    assert face.sleeps == []


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port whose SYNs are dropped (listen backlog full), as an absent IMDS address behaves."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue; later connects get no SYN-ACK
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


class SlowAcceptServer:
    """A loopback IMDS whose first connect is slow the way a busy host's is: it listens with a backlog of 0 and
    the one place of its accept queue is taken by a connection it has not accepted, so the kernel drops a client's
    SYN. Once a client is seen waiting (its socket in SYN_SENT, read from /proc/net/tcp), the server accepts that
    filler: the client's connect completes when its kernel retransmits the SYN, about 1 s after the first, or at
    once on a new attempt. Every connection after the filler gets a token answer."""

    TOKEN = "slow-first-connect-token"

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.saw_a_waiting_client = False
        self.connections = 0  # served, the filler not counted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _client_waiting(self) -> bool:
        """A socket in SYN_SENT (state 02) towards this port: its SYN was dropped, the queue being full."""
        with open("/proc/net/tcp", encoding="ascii") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        return any(row[2].endswith(f":{self.port:04X}") and row[3] == "02" for row in rows)

    def _serve(self) -> None:
        while not self._stop.is_set() and not self._client_waiting():
            self._stop.wait(0.002)
        self.saw_a_waiting_client = not self._stop.is_set()
        self._listener.settimeout(0.2)
        with contextlib.suppress(OSError):
            self._listener.accept()[
                0
            ].close()  # the filler: now there is room for the client's retransmitted SYN
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            with connection, contextlib.suppress(OSError):
                _read_request(connection)
                self.connections += 1
                body = json.dumps({"access_token": self.TOKEN, "expires_in": "3600", "token_type": "Bearer"})
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._filler.close()
        self._listener.close()


@pytest.fixture
def slow_first_connect_imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowAcceptServer]:
    """IMDS's address pointed at a SlowAcceptServer (Linux: it reads /proc/net/tcp to see a client wait)."""
    from msi_credential._engine import detection

    if not Path("/proc/net/tcp").exists():
        skip_or_fail_in_ci("no /proc/net/tcp: cannot see a client's dropped SYN on this kernel")
    server = SlowAcceptServer()
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{server.port}")
    yield server
    server.stop()


class Fallback:
    """The credential after ours in a chain: it always has a token."""

    TOKEN = "fallback-token"

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self.TOKEN, 4_102_444_800)


class AsyncFallback(Fallback):
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return Fallback.get_token(self, *scopes, **kwargs)

    async def close(self) -> None:
        pass


def chain_get_token(face: Any, credential: Any, fallback: Fallback) -> AccessToken:
    """get_token through azure-identity's ChainedTokenCredential of the face's kind: ours first, then fallback."""
    if face.is_async:
        from azure.identity.aio import ChainedTokenCredential as AsyncChain

        token: AccessToken = face._run(AsyncChain(credential.inner, fallback).get_token(SCOPE))
        return token
    from azure.identity import ChainedTokenCredential

    return ChainedTokenCredential(credential.inner, fallback).get_token(SCOPE)


@pytest.mark.parametrize(
    ("timeout", "sleeps"),
    [(None, []), (0.5, [1.0])],
    ids=["connect-completes-on-the-syn-retransmit", "connect-times-out-and-is-retried"],
)
def test_imds_on_its_own_gets_its_token_through_a_slow_first_connect(
    face: Any, slow_first_connect_imds: SlowAcceptServer, timeout: Optional[float], sleeps: list[float]
) -> None:
    """azure-identity's credential on its own does not probe either: the normal 2 s connect timeout and retries."""
    options = {} if timeout is None else {"connection_timeout": timeout}
    credential = face.credential(_environ={}, **options)

    assert credential.get_token(SCOPE).token == SlowAcceptServer.TOKEN
    assert slow_first_connect_imds.saw_a_waiting_client
    assert slow_first_connect_imds.connections == 1
    assert face.sleeps == sleeps


def test_imds_in_an_azure_identity_chain_fails_fast_on_a_slow_first_connect_and_the_chain_moves_on(
    face: Any, slow_first_connect_imds: SlowAcceptServer
) -> None:
    """Inside ChainedTokenCredential (DefaultAzureCredential is one) the first contact fails at once as unavailable
    (the default 1 s connect timeout, here 0.5 s to keep clear of the SYN retransmit): the next credential answers."""
    fallback = AsyncFallback() if face.is_async else Fallback()
    credential = face.credential(_environ={}, connection_timeout=0.5)

    token = chain_get_token(face, credential, fallback)

    assert token.token == Fallback.TOKEN and fallback.calls == 1
    assert slow_first_connect_imds.connections == 0
    assert face.sleeps == []


def test_imds_chosen_by_azure_token_credentials_gets_its_token_through_a_slow_first_connect_in_a_chain(
    face: Any, slow_first_connect_imds: SlowAcceptServer
) -> None:
    fallback = AsyncFallback() if face.is_async else Fallback()
    environ = {"AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential"}
    credential = face.credential(_environ=environ, connection_timeout=0.5)

    token = chain_get_token(face, credential, fallback)

    assert token.token == SlowAcceptServer.TOKEN and fallback.calls == 0
    assert face.sleeps == [1.0]


def test_silent_imds_address_in_a_chain_is_unavailable_after_one_connect_attempt(
    face: Any, blackhole_port: int, monkeypatch: Any, in_credential_chain: None
) -> None:
    """The first contact's 1 s connect timeout itself is checked without a network in test_mutation_guards."""
    from msi_credential._engine import detection

    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", blackhole_port))
        # Linux (CI) drops SYNs beyond a full backlog; some kernels (e.g. macOS, WSL1) complete them.
        if not sys.platform.startswith("linux"):
            pytest.skip(f"{sys.platform} completes connects beyond the backlog; no blackhole to test with")
        skip_or_fail_in_ci(
            "this Linux kernel completes connects beyond the backlog; no blackhole to test with"
        )
    except OSError:
        pass
    finally:
        probe.close()
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{blackhole_port}")
    credential = face.credential(_environ={})

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "imds_unreachable"
    assert face.sleeps == []


def test_slow_but_present_imds_still_works(face: Any, emulator_factory: Any, monkeypatch: Any) -> None:
    from msi_credential._engine import detection

    emulator = emulator_factory("imds")
    emulator.delay = 1.5  # longer than the first-contact connect timeout, within the read timeout
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", emulator.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
    credential = face.credential(_environ={})

    assert credential.get_token(SCOPE).token
    assert len(emulator.requests) == 1


def test_imds_address_that_accepts_and_never_answers_in_a_chain_is_unavailable_after_the_read_timeout(
    face: Any, raw_server: Any, monkeypatch: Any, in_credential_chain: None
) -> None:
    """Accepting and staying silent looks like a slow IMDS until the read timeout (10 s by default, here 0.5 s):
    then, inside a chain, it is unavailable at once, with no retry, as on any first contact there."""
    from msi_credential._engine import detection

    server = raw_server(lambda connection: (_read_request(connection), server.stopping.wait(30)))
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{server.port}")
    credential = face.credential(_environ={}, read_timeout=0.5)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "imds_unreachable"
    assert face.sleeps == []
    assert server.connections == 1


def test_imds_that_answered_once_is_retried_after(face: Any, emulator_factory: Any, monkeypatch: Any) -> None:
    from msi_credential._engine import detection

    emulator = emulator_factory("imds")
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", emulator.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
    credential = face.credential(_environ={})
    credential.get_token(SCOPE)
    emulator.script(Fault(reset=True), Fault(503))

    assert credential.get_token("https://vault.azure.net/.default").token
    assert face.sleeps == [1.0, 2.0]


# ------------------------------------------------------------------------------------------------------- timeouts


def test_endpoint_that_accepts_and_never_answers_times_out_and_is_retried(face: Any, raw_server: Any) -> None:
    server = raw_server(lambda connection: (_read_request(connection), server.stopping.wait(30)))
    credential = face.credential(_environ=app_service_environ(server.port), read_timeout=0.3, retry_total=1)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert face.sleeps == [1.0]  # the timeout was retried once, by the injected sleeper
    assert server.connections == 2


def test_trickling_body_cannot_hold_the_caller_past_the_deadline(face: Any, raw_server: Any) -> None:
    """The body would take 100,000 x 50 ms: only the call's deadline (1.5 s) can end the call, and the
    credential, not the server, then closes the connection."""
    client_left = threading.Event()

    def trickle(connection: socket.socket) -> None:
        _read_request(connection)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        try:
            while not server.stopping.wait(0.05):
                connection.sendall(b" ")
        except OSError:
            client_left.set()

    server = raw_server(trickle)
    credential = face.credential(
        _environ=app_service_environ(server.port), _deadline=1.5, read_timeout=5, retry_total=0
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert client_left.wait(30)  # the server was still trickling: the credential gave up and hung up


# ------------------------------------------------------------------------------------------------- bad responses


def test_truncated_body_is_a_typed_error_and_the_credential_recovers(face: Any, raw_server: Any) -> None:
    whole = b'{"access_token": "whole-token", "expires_in": 3600}'
    answers = [
        b'HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{"access_token": "abc"',
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
        % (len(whole), whole),
    ]

    def answer(connection: socket.socket) -> None:
        _read_request(connection)
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


@pytest.mark.parametrize(
    ("fault", "error_code"),
    [
        (Fault(200, b"<html>proxy login</html>", {"Content-Type": "text/html"}), "invalid_response"),
        (Fault(200, {"error": "invalid_request", "error_description": "oops"}), "invalid_response"),
        (Fault(200, {"access_token": "", "expires_in": 3600}), "invalid_response"),
        (Fault(200, {"access_token": ["t"], "expires_in": 3600}), "invalid_response"),
        (Fault(200, {"access_token": "t", "expires_in": -1}), "invalid_response"),
        (Fault(200, {"access_token": "t", "expires_on": "99999999999"}), "invalid_response"),
        (Fault(200, b"x" * (1024 * 1024 + 1)), "response_too_large"),
        (Fault(301, b"", {"Location": "http://127.0.0.1:1/"}), "unexpected_redirect"),
        (Fault(307, b"", {"Location": "http://127.0.0.1:1/"}), "unexpected_redirect"),
        (Fault(418, b"teapot"), "http_418"),
        (Fault(401, {"statusCode": 401, "message": "bad header"}), "http_401"),
    ],
)
def test_bad_answers_are_typed_errors_and_the_credential_stays_usable(
    face: Any, emulator_factory: Any, fault: Fault, error_code: str
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(fault)
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == error_code
    assert len(emulator.requests) == 1  # none of these is retried, redirects are not followed
    assert credential.get_token(SCOPE).token


def test_retry_after_over_a_minute_stops_retrying(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "120"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.status_code == 429
    assert face.sleeps == []


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_429_retry_after_holds_every_credential_of_the_endpoint_until_its_time(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "30"}))
    clock = _Clock()
    with pytest.raises(ManagedIdentityError):
        face.credential(emulator, _clock=clock, retry_total=0).get_token(SCOPE)

    hurried = face.credential(emulator, _clock=clock, timeout=10)  # another credential, the same endpoint
    with pytest.raises(ManagedIdentityError) as caught:
        hurried.get_token(SCOPE)
    clock.now += 10
    patient = face.credential(emulator, _clock=clock)
    token = patient.get_token(SCOPE)

    assert caught.value.error_code == "throttled"  # the wait is past its deadline: nothing sent
    assert token.token
    assert face.sleeps == [20.0]  # the patient one waited for the time the endpoint named, then asked
    assert len(emulator.requests) == 2


def test_retry_keywords_adjust_the_schedule(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(*[Fault(503)] * 5)
    credential = face.credential(emulator, retry_total=5, retry_backoff_factor=0.5, retry_backoff_max=3)

    credential.get_token(SCOPE)

    assert face.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]


# ---------------------------------------------------------------------------------------------- endpoint safety


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        (
            {"IDENTITY_ENDPOINT": "http://10.1.2.3/msi/token", "IDENTITY_HEADER": "h-secret"},
            "IDENTITY_ENDPOINT",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1@evil.example/", "IDENTITY_HEADER": "h-secret"},
            "IDENTITY_ENDPOINT",
        ),
        ({"MSI_ENDPOINT": "http://169.254.169.254.evil.example/", "MSI_SECRET": "m-secret"}, "MSI_ENDPOINT"),
        ({"MSI_ENDPOINT": "http://2130706433/"}, "MSI_ENDPOINT"),
        (
            {"IDENTITY_ENDPOINT": "http://0.0.0.0:40342/", "IMDS_ENDPOINT": "http://0.0.0.0"},
            "IDENTITY_ENDPOINT",
        ),
        (
            {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://192.168.0.10:8080"},
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        ),
        ({"IDENTITY_ENDPOINT": "https://[fe80::1]/", "IDENTITY_HEADER": "h-secret"}, "IDENTITY_ENDPOINT"),
    ],
)
def test_unsafe_endpoints_are_refused_before_any_socket(
    face: Any, environ: dict[str, str], variable: str, socket_guard: list[str]
) -> None:
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "invalid_endpoint"
    assert variable in str(caught.value)
    for secret in ("h-secret", "m-secret"):
        assert secret not in str(caught.value)
    assert socket_guard == []
