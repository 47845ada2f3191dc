"""The emulator's HTTP(S) server: connections, TLS handshakes, request framing and the answer on the wire."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ._tls import forget_server_name, received_server_name
from ._wire import FORM_CONTENT_TYPE, JsonBody, RecordedRequest, Reply, encode_body, media_type

if TYPE_CHECKING:
    from ._server import Emulator, Fault

_LOGGER = logging.getLogger("msi_credential.emulator")

MAX_REQUEST_BODY = 1024 * 1024
_HANDSHAKE_TIMEOUT = 10.0


class BadRequestBody(Exception):
    """The request body could not be framed: answer, then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes live connections itself
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        emulator: Emulator,
        ssl_context: ssl.SSLContext | None,
        *,
        listen: bool = True,
    ) -> None:
        self.address_family = family
        self.emulator = emulator
        self.ssl_context = ssl_context
        # listen=False: bound but not listening, so connections are refused until listen_when() (a scenario)
        self._listen_at_start = listen
        self._listening = False
        self._listen_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_activate(self) -> None:
        if self._listen_at_start:
            self.listen_when(lambda: True)

    def listen_when(self, due: Callable[[], bool]) -> bool:
        """Start listening if not yet listening and ``due()``; whether the server listens now."""
        with self._listen_lock:
            if not self._listening and due():
                super().server_activate()
                self._listening = True
            return self._listening

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve a host name (getfqdn): skip that lookup.
        TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def finish_request(self, request: Any, client_address: Any) -> None:
        connection: socket.socket = request
        emulator = self.emulator
        if not emulator._track(connection):
            return
        with contextlib.suppress(
            OSError
        ):  # answers are several writes: no Nagle/delayed-ACK stalls on keep-alive
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            context = self.ssl_context  # read once: a CA rotation may swap it
            if context is not None:
                connection.settimeout(_HANDSHAKE_TIMEOUT)
                forget_server_name()
                try:
                    connection = context.wrap_socket(connection, server_side=True)
                except OSError as exc:  # includes ssl.SSLError: e.g. a client whose pin failed hung up
                    _LOGGER.debug("TLS handshake failed: %s", type(exc).__name__)
                    return
                emulator._retrack(request, connection)
            _Handler(connection, client_address, self)
        finally:
            emulator._untrack(connection)
            if connection is not request:
                connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        _LOGGER.debug("connection ended with an error", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "msi-credential-emulator"
    sys_version = ""
    timeout = 60
    server: Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the emulator logs method, path and status itself."""

    def _dispatch(self) -> None:
        emulator = self.server.emulator
        path, query_string = _split_target(self.path)
        pairs = parse_qsl(query_string, keep_blank_values=True)
        query = dict(pairs)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        framing_error: BadRequestBody | None = None
        try:
            body = self._read_body(headers)
        except BadRequestBody as exc:
            framing_error, body = exc, b""
            self.close_connection = True
        form: dict[str, str] = {}
        if media_type(headers) == FORM_CONTENT_TYPE:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        scheme = "https" if self.server.ssl_context is not None else "http"
        server_name = received_server_name() if scheme == "https" else None
        request = RecordedRequest(
            self.command, path, query, headers, form, body, scheme, server_name, request_line=self.requestline
        )
        fault = emulator._record(request)

        repeated = len(pairs) != len(query)
        reply = (
            None
            if fault is not None and fault.reset
            else self._reply(request, fault, framing_error, repeated)
        )

        emulator._wait((fault.delay if fault is not None else 0.0) + emulator.delay)
        if reply is None:
            _LOGGER.debug("%s %s -> connection reset", self.command, path)
            self._reset()
            return
        _LOGGER.debug("%s %s -> %d", self.command, path, reply.status)
        self._send(reply)

    def _reply(
        self,
        request: RecordedRequest,
        fault: Fault | None,
        framing_error: BadRequestBody | None,
        repeated: bool,
    ) -> Reply:
        emulator = self.server.emulator
        if fault is not None and (fault.body is not None or not 200 <= fault.status < 300):
            return emulator._fault_reply(fault)
        if framing_error is not None:
            return emulator._endpoint.errors.reply(framing_error.status, "too_large", framing_error.message)
        if repeated:
            return emulator._endpoint.errors.reply(400, "bad_request", "A query parameter is repeated")
        reply = emulator._endpoint.answer(request)
        if fault is not None and fault.headers:  # a 2xx fault without a body: the normal answer, its headers
            reply = Reply(reply.status, reply.body, {**reply.headers, **fault.headers})
        return reply

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length_text = headers.get("content-length")
        if length_text is None:
            return b""
        if not length_text.strip().isdigit():
            raise BadRequestBody(400, "Invalid Content-Length")
        length = int(length_text)
        if length > MAX_REQUEST_BODY:
            raise BadRequestBody(413, "Request body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequestBody(400, "Request body shorter than Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequestBody(400, "Invalid chunked body") from None
            if size == 0:
                break
            total += size
            if total > MAX_REQUEST_BODY:
                raise BadRequestBody(413, "Request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)
        while self.rfile.readline(8192).strip():  # trailers
            pass
        return b"".join(chunks)

    def _send(self, reply: Reply) -> None:
        body = encode_body(reply.body)
        no_body = reply.status in (204, 304)
        self.send_response(reply.status)
        names = {name.lower() for name in reply.headers}
        if body and "content-type" not in names:
            self.send_header("Content-Type", _content_type(reply.body))
        for name, value in reply.headers.items():
            if name.lower() != "content-length":
                self.send_header(name, value)
        if not no_body:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and not no_body and self.command != "HEAD":
            self.wfile.write(body)

    def _reset(self) -> None:
        """Close the connection without a response, with a TCP reset where the platform allows."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()


def _split_target(target: str) -> tuple[str, str]:
    if not target.startswith("/"):  # absolute-form request target
        parts = urlsplit(target)
        return parts.path or "/", parts.query
    path, _, query = target.partition("?")
    return path, query.partition("#")[0]


def _content_type(body: JsonBody) -> str:
    if isinstance(body, Mapping):
        return "application/json"
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"
