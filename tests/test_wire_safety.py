"""Correct and safe on the wire whatever the caller or the server does: exact request bytes, hostile answers,
secrets that servers echo back, tokens that would break every downstream call."""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import logging
import socket
import threading
import zlib
from collections.abc import Iterator
from typing import Any, Callable, Optional

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import UserAssignedIdentity

from .test_faults import raw_server  # noqa: F401 - fixture, used as a parameter below

SCOPE = "https://storage.azure.com/.default"
CLIENT_A = "11111111-aaaa-4aaa-8aaa-aaaaaaaaaaaa"


class CapturingServer:
    """A loopback HTTP/1.1 server that records each request's raw bytes and answers with ``reply(raw)``."""

    def __init__(self, reply: Callable[[bytes], bytes]) -> None:
        self._reply = reply
        self.raw: list[bytes] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port: int = self._listener.getsockname()[1]
        self._stopped = threading.Event()
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._connections.append(connection)
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            connection.settimeout(10)
            while True:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = connection.recv(65536)
                    if not chunk:
                        return
                    data += chunk
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

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.close()


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
    servers: list[CapturingServer] = []

    def start(reply: Callable[[bytes], bytes]) -> CapturingServer:
        server = CapturingServer(reply)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def environ_for(source: str, port: int) -> dict[str, str]:
    base = f"http://127.0.0.1:{port}"
    if source == "imds":
        return {"AZURE_POD_IDENTITY_AUTHORITY_HOST": base}
    if source == "app_service":
        return {"IDENTITY_ENDPOINT": base + "/msi/token", "IDENTITY_HEADER": "app-service-secret"}
    if source == "machine_learning":
        return {"MSI_ENDPOINT": base + "/msi/token", "MSI_SECRET": "machine-learning-secret"}
    raise AssertionError(source)


# ----------------------------------------------------------------------------------------- 1: query encoding


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


def test_a_fragment_in_a_scope_reaches_the_emulator_as_the_resource_with_the_identity(
    face: Any, emulator_factory: Any
) -> None:
    """The emulator sees the whole resource and the client id: no fallback to the system-assigned identity."""
    emulator = emulator_factory("imds", identities=[UserAssignedIdentity(CLIENT_A, "object-a", "/sub/a")])
    credential = face.credential(emulator, client_id=CLIENT_A)

    credential.get_token("https://vault.azure.net#/.default")

    (request,) = emulator.requests
    assert request.query["resource"] == "https://vault.azure.net#"
    assert request.query["client_id"] == CLIENT_A


# ------------------------------------------------------------------------ 7: tokens no header can carry


@pytest.mark.parametrize(
    "body",
    [
        token_body(token="abc\r\nX-Injected: 1"),
        token_body(token="abc\ndef"),
        token_body(token="abc\x00def"),
        token_body(token="abc def"),
        token_body(token="abc\u00e9"),
        {**token_body(), "token_type": "Bearer\r\nX-Injected: 1"},
        {**token_body(), "token_type": "Bear\x00er"},
    ],
    ids=["crlf", "lf", "nul", "space", "non-ascii", "type-crlf", "type-nul"],
)
def test_a_token_with_control_characters_is_refused_and_never_cached(
    face: Any, capturing_server: Any, body: dict[str, Any]
) -> None:
    server = capturing_server(lambda head: http_answer(body))
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)

    for _ in range(2):
        with pytest.raises(ManagedIdentityError) as caught:
            credential.get_token(SCOPE)
        assert caught.value.error_code == "invalid_response"
        assert body["access_token"] not in str(caught.value)

    assert len(server.raw) == 2  # refused each time, so nothing was cached


# ------------------------------------------------------------------------ 10: the 2-hour rule, as stated


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.999])
def test_a_token_of_exactly_two_hours_refreshes_at_half_its_lifetime(
    face: Any, capturing_server: Any, fraction: float
) -> None:
    """expires_in 7200 is >= 7200 s whatever fraction of a second the request started at."""
    start = 1_800_000_000 + fraction
    server = capturing_server(lambda head: http_answer(token_body(expires_in=7200)))
    credential = face.credential(_environ=environ_for("app_service", server.port), _clock=lambda: start)

    info = credential.get_token_info(SCOPE)

    assert info.expires_on == 1_800_000_000 + 7200
    assert info.refresh_on == 1_800_000_000 + 3600


# ------------------------------------------------------------------------ 5: numbers that overflow


@pytest.mark.parametrize(
    "field",
    [
        {"expires_in": int("9" * 4000)},
        {"expires_in": -int("9" * 4000)},
        {"expires_on": int("9" * 4000)},
        {"expires_in": 3600, "refresh_in": int("9" * 4000)},
        {"expires_in": 1e300},
    ],
    ids=["expires_in", "negative", "expires_on", "refresh_in", "float"],
)
def test_a_huge_expiry_number_is_invalid_response_not_an_overflow(
    face: Any, capturing_server: Any, field: dict[str, Any]
) -> None:
    body = {"access_token": "tok-" + "y" * 20, **field}
    server = capturing_server(lambda head: http_answer(body))
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)

    try:
        info = credential.get_token_info(SCOPE)
    except ManagedIdentityError as error:
        assert error.error_code == "invalid_response"
    else:  # a refresh_in out of range is ignored, as any unusable refresh_in is
        assert "refresh_in" in field
        assert info.refresh_on < info.expires_on


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


# ------------------------------------------------------------ 5: inputs that used to raise raw exceptions


@pytest.mark.parametrize(
    ("variables", "secret"),
    [
        ({"IDENTITY_HEADER": "s\u0113cret-\u2603-value"}, "s\u0113cret-\u2603-value"),
        ({"IDENTITY_HEADER": "s\u00e9cret-latin-1"}, "s\u00e9cret-latin-1"),
        ({"MSI_SECRET": "ml-s\u0113cret-\u2603"}, "ml-s\u0113cret-\u2603"),
    ],
    ids=["identity-header", "identity-header-latin-1", "msi-secret"],
)
def test_a_non_ascii_secret_is_a_typed_error_before_any_socket(
    face: Any, capturing_server: Any, variables: dict[str, str], secret: str
) -> None:
    server = capturing_server(lambda head: http_answer(token_body()))
    base = f"http://127.0.0.1:{server.port}/msi/token"
    environ = (
        {"IDENTITY_ENDPOINT": base, **variables}
        if "IDENTITY_HEADER" in variables
        else {"MSI_ENDPOINT": base, **variables}
    )
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "invalid_secret"
    assert server.raw == []
    assert_secret_absent(caught.value, secret)


def test_a_non_ascii_arc_key_is_arc_invalid_key_file_without_the_key(
    face: Any, capturing_server: Any, tmp_path: Any
) -> None:
    key = "cl\u00e9-secr\u00e8te-\u2603"
    key_file = tmp_path / "agent.key"
    key_file.write_bytes(key.encode("utf-8"))
    challenge = {"WWW-Authenticate": f"Basic realm={key_file}"}
    server = capturing_server(lambda head: http_answer({"error": "unauthorized"}, 401, challenge))
    environ = {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{server.port}/metadata/identity/oauth2/token",
        "IMDS_ENDPOINT": f"http://127.0.0.1:{server.port}",
    }
    credential = face.credential(_environ=environ, _arc_key_directory=str(tmp_path))

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert len(server.raw) == 1  # the challenge only: the key was never sent
    assert_secret_absent(caught.value, key)


@pytest.mark.parametrize("bad", ["\t", " ", "\x00", "\u00e9", "#frag", "\x7f"])
@pytest.mark.parametrize(
    "variable", ["IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IMDS_ENDPOINT"]
)
def test_whitespace_or_control_characters_in_an_endpoint_are_invalid_endpoint_before_any_socket(
    face: Any, capturing_server: Any, variable: str, bad: str
) -> None:
    server = capturing_server(lambda head: http_answer(token_body()))
    good = f"http://127.0.0.1:{server.port}"
    environ = {
        "IDENTITY_ENDPOINT": {"IDENTITY_ENDPOINT": good + f"/m{bad}si", "IDENTITY_HEADER": "header-secret"},
        "MSI_ENDPOINT": {"MSI_ENDPOINT": good + f"/m{bad}si"},
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": {"AZURE_POD_IDENTITY_AUTHORITY_HOST": good + f"/{bad}x"},
        "IMDS_ENDPOINT": {"IDENTITY_ENDPOINT": good + "/metadata", "IMDS_ENDPOINT": good + f"/{bad}x"},
    }[variable]
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "invalid_endpoint"
    assert variable in str(caught.value)
    assert server.raw == []


# ------------------------------------------------------------------------ 6: secrets past the scrubber

APP_SECRET = "app-service-secret"


def _log_text(caplog: Any) -> str:
    return "\n".join(f"{record.getMessage()} {record.args!r}" for record in caplog.records)


@pytest.mark.parametrize(
    "echo",
    [
        APP_SECRET,
        APP_SECRET.upper(),
        base64.b64encode(APP_SECRET.encode()).decode(),
        base64.urlsafe_b64encode(APP_SECRET.encode()).decode().rstrip("="),
        APP_SECRET.encode().hex(),
        "app%2Dservice-secret".replace("%2D", "-").replace("-", "%2D", 1),
    ],
    ids=["plain", "upper", "base64", "base64url", "hex", "percent"],
)
def test_a_secret_echoed_by_the_server_is_in_no_message_attribute_or_log_record(
    face: Any, capturing_server: Any, caplog: Any, echo: str
) -> None:
    body = {"error": {"code": f"Bad{echo}", "message": f"got {echo}", "correlationId": f"cid-{echo}"}}
    server = capturing_server(lambda head: http_answer(body, 500))
    credential = face.credential(
        _environ=environ_for("app_service", server.port), retry_total=0, logging_enable=True
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.correlation_id is not None
    assert caught.value.correlation_id.startswith("cid-")
    assert_secret_absent(caught.value, echo, APP_SECRET)
    assert echo.lower() not in _log_text(caplog).lower()


def test_the_arc_challenge_header_is_redacted_in_debug_logs(
    face: Any, emulator_factory: Any, caplog: Any, tmp_path: Any
) -> None:
    emulator = emulator_factory("azure_arc", arc_key_directory=str(tmp_path))
    credential = face.credential(emulator, logging_enable=True)
    caplog.set_level(logging.DEBUG)

    credential.get_token(SCOPE)

    text = _log_text(caplog)
    assert str(tmp_path) not in text
    assert "WWW-Authenticate" in text or "www-authenticate" in text.lower()  # logged, with its value redacted


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
    assert token not in _log_text(caplog)


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


# ------------------------------------------------------------------------ 2: compressed answers


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
    import tracemalloc

    from .conftest import FIGURES

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


# ------------------------------------------------------------------------ 3 and 12: stalled attempts


def _client_sockets_to(port: int) -> int:
    """Sockets of this process whose peer is ``port`` on loopback (our side of connections to a server)."""
    import os

    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[9] in inodes:
                    count += 1
    return count


def _endless_continue(connection: socket.socket, stopping: threading.Event) -> None:
    while not stopping.wait(0.02):
        connection.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")


def _trickled_headers(connection: socket.socket, stopping: threading.Event) -> None:
    connection.sendall(b"HTTP/1.1 200 OK\r\n")
    while not stopping.wait(0.02):
        connection.sendall(b"X-Slow: 1\r\n")


@pytest.mark.skipif(
    not __import__("os").path.exists("/proc/self/fd"), reason="counts file descriptors in /proc"
)
@pytest.mark.parametrize("behaviour", [_endless_continue, _trickled_headers], ids=["100-continue", "trickle"])
def test_stalled_attempts_leave_no_thread_or_socket_behind(
    face: Any,
    raw_server: Any,  # noqa: F811
    behaviour: Callable[[socket.socket, threading.Event], None],
) -> None:
    from .conftest import FIGURES
    from .test_faults import _read_request

    def stall(connection: socket.socket) -> None:
        _read_request(connection)
        behaviour(connection, server.stopping)

    server = raw_server(stall)
    environ = environ_for("app_service", server.port)
    credential = face.credential(_environ=environ, timeout=0.1, retry_total=0)
    calls = 20

    for _ in range(calls):
        with pytest.raises(ManagedIdentityError) as caught:
            credential.get_token(SCOPE)
        assert caught.value.error_code == "endpoint_unreachable"

    ours = [thread for thread in threading.enumerate() if thread.name.startswith("msi-credential")]
    sockets = _client_sockets_to(server.port)
    FIGURES.append(
        f"{calls} stalled calls ({behaviour.__name__.strip('_')}, {face.name}): "
        f"{len(ours)} msi-credential thread(s), {sockets} open client socket(s) afterwards"
    )
    assert server.connections == calls
    assert [thread.name for thread in ours] in ([], ["msi-credential-deadlines"])
    assert sockets == 0


def test_timeout_bounds_the_whole_call_including_retries(face: Any, raw_server: Any) -> None:  # noqa: F811
    from .test_faults import _read_request

    def stall(connection: socket.socket) -> None:
        _read_request(connection)
        _trickled_headers(connection, server.stopping)

    server = raw_server(stall)
    credential = face.credential(_environ=environ_for("app_service", server.port), timeout=0.3)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert server.connections == 1  # the first retry (1 s away) would cross the 0.3 s deadline
    assert face.sleeps == []


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan")])
def test_timeout_must_be_a_positive_number(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        face.credential(timeout=value)


# ------------------------------------------------------------------------ 8: an Arc key file that blocks


def _arc_challenge_server(capturing_server: Any, realm: str) -> Any:
    challenge = {"WWW-Authenticate": f"Basic realm={realm}"}
    return capturing_server(lambda head: http_answer({"error": "unauthorized"}, 401, challenge))


def _arc_environ(port: int) -> dict[str, str]:
    return {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{port}/metadata/identity/oauth2/token",
        "IMDS_ENDPOINT": f"http://127.0.0.1:{port}",
    }


def _call_with_hang_guard(call: Callable[[], Any], unblock: Callable[[], None]) -> Any:
    """Run ``call`` in a thread; if it is still blocked after 10 s, unblock it and fail (never hang the suite)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        unblock()
        worker.join(5)
        pytest.fail("the call blocked on the key file")
    return outcome[0]


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="FIFOs are a POSIX thing")
@pytest.mark.parametrize("swapped", [False, True], ids=["fifo", "swapped-after-the-check"])
def test_an_arc_key_file_that_is_a_fifo_is_refused_without_blocking(
    face: Any, capturing_server: Any, tmp_path: Any, monkeypatch: Any, swapped: bool
) -> None:
    import os

    from msi_credential._transport import files

    fifo = tmp_path / "agent.key"
    os.mkfifo(fifo)
    if swapped:  # the check sees a regular file; by the open, the path is a FIFO
        regular = tmp_path / "regular"
        regular.write_text("x" * 32)
        real_lstat = os.lstat
        monkeypatch.setattr(
            files.os,
            "lstat",
            lambda path: real_lstat(regular) if str(path) == str(fifo) else real_lstat(path),
        )
    server = _arc_challenge_server(capturing_server, str(fifo))
    credential = face.credential(_environ=_arc_environ(server.port), _arc_key_directory=str(tmp_path))

    def unblock() -> None:
        with open(fifo, "wb") as writer:
            writer.write(b"unblocked")

    outcome = _call_with_hang_guard(lambda: credential.get_token(SCOPE), unblock)

    assert isinstance(outcome, ManagedIdentityError)
    assert outcome.error_code == "arc_invalid_key_file"
    assert len(server.raw) == 1


async def test_the_async_face_reads_the_key_file_outside_the_event_loop_thread(
    capturing_server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    from msi_credential._transport import aio
    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    key_file = tmp_path / "agent.key"
    key_file.write_text("k" * 32)
    readers: list[int] = []
    real_read = aio.read_file

    def recording_read(effect: Any) -> Any:
        readers.append(threading.get_ident())
        return real_read(effect)

    monkeypatch.setattr(aio, "read_file", recording_read)
    server = _arc_challenge_server(capturing_server, str(key_file))
    async with AsyncCredential(
        _environ=_arc_environ(server.port), _arc_key_directory=str(tmp_path), share_cache=False
    ) as credential:
        with pytest.raises(ManagedIdentityError):
            await credential.get_token(SCOPE)  # the server refuses the key: arc_challenge_rejected

    assert readers
    assert threading.get_ident() not in readers


# ------------------------------------------------------------------------ 9 and 5: the caller's transport


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
