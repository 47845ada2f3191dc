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

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential.emulator import UserAssignedIdentity

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
    environ = {"IDENTITY_ENDPOINT": base, **variables} if "IDENTITY_HEADER" in variables else {"MSI_ENDPOINT": base, **variables}
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


def test_an_http_0_9_style_answer_does_not_put_the_token_in_the_error(face: Any, capturing_server: Any, caplog: Any) -> None:
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
