"""Loopback servers, answers and waits that the transport tests share with the engine's and the faces' tests that
reach them.

``raw_server`` and ``capturing_server`` are fixtures: tests/transport/conftest.py makes them available in this
folder; a module elsewhere imports them from here."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

SCOPE = "https://storage.azure.com/.default"
CLIENT_A = "11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa"


# ---------------------------------------------------------------- servers that answer as no HTTP server would


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
        for connection in accepted(self._listener, self._stop):
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


def accepted(listener: socket.socket, stop: threading.Event) -> Iterator[socket.socket]:
    """The connections ``listener`` (which has an accept timeout) accepts, until ``stop`` is set or it is closed."""
    while not stop.is_set():
        try:
            connection, _ = listener.accept()
        except (TimeoutError, socket.timeout):
            continue
        except OSError:
            return
        yield connection


def read_request(connection: socket.socket, timeout: float = 5) -> bytes:
    """Read a request up to the end of its head, and return what was read (the start of a body may follow the
    head); b"" if the client closed the connection first."""
    connection.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return b""
        data += chunk
    return data


def _stopped_after_the_test(kind: Callable[[Any], Any]) -> Iterator[Callable[[Any], Any]]:
    """What a server fixture yields: a function that starts servers of ``kind``; they stop after the test."""
    with contextlib.ExitStack() as started:

        def start(argument: Any) -> Any:
            server = kind(argument)
            started.callback(server.stop)
            return server

        yield start


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[socket.socket], None]], RawServer]]:
    yield from _stopped_after_the_test(RawServer)


def app_service_environ(port: int) -> dict[str, str]:
    return {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/msi/token",
        "IDENTITY_HEADER": "header-secret-value",
    }


# ---------------------------------------------------------------------- servers that record the request bytes


class CapturingServer(RawServer):
    """A loopback HTTP/1.1 server that records each request's raw bytes and answers with ``reply(raw)``."""

    def __init__(self, reply: Callable[[bytes], bytes]) -> None:
        self._reply = reply
        self.raw: list[bytes] = []
        super().__init__(self._handle)

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            while True:
                data = read_request(connection, timeout=10)
                if not data:
                    return
                head, _, rest = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value.strip())
                while len(rest) < length:
                    rest += connection.recv(65536)
                self.raw.append(head + b"\r\n\r\n" + rest)
                connection.sendall(self._reply(head))

    @property
    def request_lines(self) -> list[bytes]:
        return [raw.split(b"\r\n", 1)[0] for raw in self.raw]


def http_answer(
    body: bytes | dict[str, Any], status: int = 200, headers: Optional[dict[str, str]] = None
) -> bytes:
    payload = json.dumps(body).encode() if isinstance(body, dict) else body
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(payload)}", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def token_body(token: str = "tok-" + "x" * 40, expires_in: Any = 3600, **extra: Any) -> dict[str, Any]:
    return {"access_token": token, "expires_in": expires_in, "token_type": "Bearer", **extra}


@pytest.fixture
def capturing_server() -> Iterator[Callable[[Callable[[bytes], bytes]], CapturingServer]]:
    yield from _stopped_after_the_test(CapturingServer)


def environ_for(source: str, port: int) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    if source == "imds":
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": base}
    if source == "app_service":
        return {"IDENTITY_ENDPOINT": base + "/msi/token", "IDENTITY_HEADER": "app-service-secret"}
    if source == "machine_learning":
        return {"MSI_ENDPOINT": base + "/msi/token", "MSI_SECRET": "machine-learning-secret"}
    raise AssertionError(source)


def arc_challenge_server(capturing_server: Any, realm: str) -> Any:
    challenge = {"WWW-Authenticate": f"Basic realm={realm}"}
    return capturing_server(lambda head: http_answer({"error": "unauthorized"}, 401, challenge))


def arc_environ(port: int) -> dict[str, str]:
    return {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/metadata/identity/oauth2/token",
        "IMDS_ENDPOINT": f"http://127.0.0.1:{port}",
    }


# --------------------------------------------------------------------------------------- what must never leak


def assert_secret_absent(error: BaseException, *secrets: str) -> None:
    """Not in the message, the repr, the args, any attribute, or any exception chained to it."""
    import traceback

    seen: list[str] = []
    current: Optional[BaseException] = error
    while current is not None and len(seen) < 20:
        seen += [str(current), repr(current), repr(current.args), repr(vars(current))]
        current = current.__cause__ or current.__context__
    seen.append("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    text = "\n".join(seen)
    for secret in secrets:
        assert secret not in text


def log_text(caplog: Any) -> str:
    return "\n".join(f"{record.getMessage()} {record.args!r}" for record in caplog.records)


# ---------------------------------------------------------------------------------------- environment proxies


def proxy_everything(monkeypatch: Any, port: int) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


# ------------------------------------------------------------------------------------------- clocks and waits


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: Optional[float] = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now


def with_a_cached_token(
    emulator_factory: Any, kind: Callable[..., Any], **options: Any
) -> tuple[Any, Clock, Any, Any]:
    """An IMDS emulator whose tokens live an hour; a credential ``kind(**options)`` (a credential class, or a face's
    ``credential``) of its own cache on a clock the test moves, whose refresh point is exactly refresh_on; and the
    token info it got first (the async face's in a loop of its own)."""
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    options = {
        "_environ": emulator.environ,
        "_clock": clock,
        "_random": lambda: 0.0,
        "share_cache": False,
        **options,
    }
    credential = kind(**options)
    old = credential.get_token_info(SCOPE)
    if inspect.isawaitable(old):
        old = asyncio.run(old)
    assert old.refresh_on is not None
    return emulator, clock, credential, old


def until(condition: Any, limit: int = 3000) -> None:
    """Wait for a condition another thread makes true (polled through an Event's wait, never a bare sleep)."""
    tick = threading.Event()
    for _ in range(limit):
        if condition():
            return
        tick.wait(0.01)
    pytest.fail("timed out")


async def until_async(condition: Any, limit: int = 3000) -> None:
    """The same in an event loop: its tasks run between the polls."""
    tick = threading.Event()
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
        tick.wait(0.001)
    pytest.fail("timed out")


def wait_for(condition: Any, what: str, limit: float = 10.0) -> None:
    """Wait on an event-like condition (polled through an Event's wait, never a bare sleep)."""
    tick = threading.Event()
    waited = 0.0
    while not condition():
        if waited >= limit:
            pytest.fail(f"timed out waiting for {what}")
        tick.wait(0.01)
        waited += 0.01
