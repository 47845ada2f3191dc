"""A loopback HTTP(S) server that answers like one managed identity endpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import math
import os
import random
import re
import secrets
import shutil
import socket
import ssl
import struct
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socketserver import TCPServer
from types import TracebackType
from typing import Any, Union
from urllib.parse import parse_qsl, urlsplit

from msi_credential._source import ManagedIdentitySource

from . import _protocols as wire
from ._protocols import RecordedRequest, Reply, UserAssignedIdentity
from ._tokens import entra_v1_claims, mint_jwt

__all__ = ["ARC_KEY_DIRECTORY", "Emulator", "EmulatorSetupError", "Fault"]

_LOGGER = logging.getLogger("msi_credential.emulator")

MAX_REQUEST_BODY = 1024 * 1024
ARC_KEY_VALIDITY = 300.0  # seconds a challenge key stays usable (each is also single-use)
_HANDSHAKE_TIMEOUT = 10.0
_STOP_JOIN_TIMEOUT = 2.0
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
# The file name the workload identity webhook projects the service account token under.
FEDERATED_TOKEN_FILE_NAME = "azure-identity-token"
ASSERTION_LIFETIME = 3600  # seconds, the projected service account token's default
# Where the Azure Connected Machine agent writes its challenge key files, and the only place other clients read them.
ARC_KEY_DIRECTORY = (
    os.path.join(os.environ.get("PROGRAMDATA", r"C:\ProgramData"), "AzureConnectedMachineAgent", "Tokens")
    if os.name == "nt"
    else "/var/opt/azcmagent/tokens"
)
_ARC_DIRECTORY_MODE = 0o770  # the agent's: its own user and the himds group
_ARC_KEY_FILE_MODE = 0o640  # readable by the himds group, whose members may ask for tokens
_ARC_GROUP = "himds"
EMULATOR_EXTRA_HINT = "pip install 'msi-credential[emulator]'"
# AKS token proxy (workload identity with token_proxy=True): the name its certificate is for, which is not the
# address it listens on, so a client must send and verify it (AZURE_KUBERNETES_SNI_NAME); '.invalid' never resolves.
TOKEN_PROXY_SERVER_NAME = "token-proxy.msi-emulator.invalid"
TOKEN_PROXY_PATH = "/aks-token-proxy"
_handshake = threading.local()  # the SNI each handler thread's TLS handshake received

FaultBody = Union[bytes, str, Mapping[str, Any], None]


@dataclass(frozen=True)
class Fault:
    """One scripted answer. A mapping body is sent as JSON; None gives the source's error body for ``status``
    (for a 2xx status: the normal answer). ``reset`` closes the connection without answering."""

    status: int = 500
    body: FaultBody = None
    headers: Mapping[str, str] | None = None
    delay: float = 0.0
    reset: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.status, bool) or not isinstance(self.status, int) or not 200 <= self.status <= 599:
            raise ValueError("Fault status must be an int from 200 to 599")
        if self.delay < 0:
            raise ValueError("Fault delay must not be negative")
        if self.body is not None and not isinstance(self.body, (bytes, str, Mapping)):
            raise TypeError("Fault body must be bytes, str, a mapping or None")


class EmulatorSetupError(RuntimeError):
    """The emulator cannot start as asked: a missing optional dependency, or a place it may not write."""


class _BadRequestBody(Exception):
    """The request body could not be framed: answer, then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() closes live connections itself
    request_queue_size = 64

    def __init__(
        self,
        address: tuple[str, int],
        family: socket.AddressFamily,
        emulator: Emulator,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.address_family = family
        self.emulator = emulator
        self.ssl_context = ssl_context
        super().__init__(address, _Handler)

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
                _handshake.server_name = None
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
    server: _Server

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
        framing_error: _BadRequestBody | None = None
        try:
            body = self._read_body(headers)
        except _BadRequestBody as exc:
            framing_error, body = exc, b""
            self.close_connection = True
        form: dict[str, str] = {}
        if headers.get("content-type", "").split(";", 1)[0].strip().lower() == wire.FORM_CONTENT_TYPE:
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        scheme = "https" if self.server.ssl_context is not None else "http"
        server_name = getattr(_handshake, "server_name", None) if scheme == "https" else None
        request = RecordedRequest(self.command, path, query, headers, form, body, scheme, server_name)
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
        framing_error: _BadRequestBody | None,
        repeated: bool,
    ) -> Reply:
        emulator = self.server.emulator
        if fault is not None and (fault.body is not None or not 200 <= fault.status < 300):
            return emulator._fault_reply(fault)
        if framing_error is not None:
            return wire.error_reply(emulator._spec, framing_error.status, "too_large", framing_error.message)
        if repeated:
            return wire.error_reply(emulator._spec, 400, "bad_request", "A query parameter is repeated")
        reply = emulator._answer(request)
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
            raise _BadRequestBody(400, "Invalid Content-Length")
        length = int(length_text)
        if length > MAX_REQUEST_BODY:
            raise _BadRequestBody(413, "Request body too large")
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequestBody(400, "Request body shorter than Content-Length")
        return body

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise _BadRequestBody(400, "Invalid chunked body") from None
            if size == 0:
                break
            total += size
            if total > MAX_REQUEST_BODY:
                raise _BadRequestBody(413, "Request body too large")
            chunks.append(self.rfile.read(size))
            self.rfile.readline(16)
        while self.rfile.readline(8192).strip():  # trailers
            pass
        return b"".join(chunks)

    def _send(self, reply: Reply) -> None:
        body = wire.encode_body(reply.body)
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


def _content_type(body: wire.JsonBody) -> str:
    if isinstance(body, Mapping):
        return "application/json"
    try:
        json.loads(body)
    except ValueError:
        return "text/plain; charset=utf-8"
    return "application/json"


def _write_atomically(path: str, text: str) -> None:
    """Replace the file at ``path`` with ``text`` in one rename (owner-readable only)."""
    directory = os.path.dirname(path)
    descriptor, staging = tempfile.mkstemp(dir=directory, prefix=".staging-")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            stream.write(text)
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(staging)
        raise


def _read_assertion(path: str) -> str | None:
    """The federated token file's contents, stripped; None when it is missing, unreadable or empty."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(1024 * 1024).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


def _public_roots() -> bytes:
    """The usual public root certificates in PEM: certifi's (requests brings it), else the system's CA file."""
    candidates: list[str] = []
    try:
        import certifi

        candidates.append(certifi.where())
    except ImportError:
        pass
    default = ssl.get_default_verify_paths().cafile
    if default:
        candidates.append(default)
    for path in candidates:
        try:
            with open(path, "rb") as stream:
                return stream.read()
        except OSError:
            continue
    return b""


def _give_to_agent_group(target: int | str) -> None:
    """Hand a key file or the key directory to the ``himds`` group, as the agent does, where that group exists."""
    try:
        import grp

        gid = grp.getgrnam(_ARC_GROUP).gr_gid
    except (ImportError, KeyError):
        return
    with contextlib.suppress(OSError):
        if isinstance(target, int):
            os.fchown(target, -1, gid)
        else:
            os.chown(target, -1, gid)


def _record_server_name(connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
    """The TLS server name the client sent (None: none), for the request recorded on this handler thread."""
    _handshake.server_name = server_name


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _leaf_thumbprint(certfile: str) -> str:
    with open(certfile, "rb") as stream:
        match = _PEM_CERTIFICATE.search(stream.read())
    if match is None:
        raise ValueError(f"no PEM certificate in {certfile}")
    der = ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii"))
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()


class Emulator:
    """A loopback emulator of one managed identity endpoint; ``start()`` it, point a credential at ``environ``."""

    def __init__(
        self,
        source: ManagedIdentitySource | str = "imds",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        identities: Sequence[UserAssignedIdentity] = (),
        token_lifetime: int = 3600,
        tenant_id: str = "72f988bf-86f1-41af-91ab-2d7cd011db47",
        secret: str | None = None,
        tls_cert: tuple[str, str] | None = None,
        tls: bool | None = None,
        arc_key_directory: str | None = None,
        default_client_id: str | None = None,
        clock: Callable[[], float] = time.time,
        token_proxy: bool = False,
        proxy_path: str = TOKEN_PROXY_PATH,
    ) -> None:
        self.source = ManagedIdentitySource(source)
        self._spec = wire.SPECS[self.source]
        if token_proxy:
            if self.source is not ManagedIdentitySource.WORKLOAD_IDENTITY:
                raise ValueError("only the workload identity emulator plays the AKS token proxy")
            if tls is False or tls_cert is not None:
                raise ValueError("the AKS token proxy is served over https with a CA made for the run")
            if not proxy_path.startswith("/") or any(ch in proxy_path for ch in "?# "):
                raise ValueError("proxy_path must be a URL path starting with '/'")
            tls = True
        if tls is None:
            tls = self._spec.scheme == "https"
        if not tls and self._spec.scheme == "https":
            raise ValueError(f"{self.source.value} is served over https only")
        self._scheme = "https" if tls else "http"
        self.token_proxy = token_proxy
        self.proxy_path = proxy_path.rstrip("/") if token_proxy else ""
        self.proxy_server_name = TOKEN_PROXY_SERVER_NAME if token_proxy else None
        self._path = self.proxy_path + self._spec.path.replace("{tenant}", tenant_id)
        self.host = host
        self.port = port
        self.identities: list[UserAssignedIdentity] = list(identities)
        self.token_lifetime = token_lifetime
        self.tenant_id = tenant_id
        self.secret = secret if secret is not None else secrets.token_urlsafe(24)
        self.default_client_id = default_client_id
        self.delay = 0.0
        self.system_identity = UserAssignedIdentity(
            client_id=default_client_id or str(uuid.uuid4()), object_id=str(uuid.uuid4()), resource_id=""
        )
        self.thumbprint: str | None = None
        self._tls_cert = tls_cert
        self._arc_key_directory = os.path.abspath(arc_key_directory) if arc_key_directory else None
        self._clock = clock
        self._signing_key = secrets.token_bytes(32)
        self._assertion_key = secrets.token_bytes(32)

        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._faults: deque[Fault] = deque()
        self._tokens: list[str] = []
        self._arc_keys: dict[str, float] = {}  # key content -> expiry (clock time)
        self._arc_files: list[str] = []
        self._token_file: str | None = None  # workload identity: the federated token file the emulator writes
        self._assertion: str | None = None  # what it holds
        self._retired_assertions: set[str] = set()  # what it held before: refused as expired
        self._failure_rate = 0.0
        self._failure_statuses: tuple[int, ...] = (500, 429)
        self._random = random.Random()  # noqa: S311 - fault injection, not security
        self._random_failures = 0
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()

        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._temp_dirs: list[str] = []
        self._created_dirs: list[str] = []  # made for the Arc key directory: removed at stop when empty
        self._ca_file: str | None = None
        self._ca_bundle: str | None = None
        self._key_directory: str | None = None
        self._bound: tuple[str, int] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Bind and serve in a background thread (a no-op when already running)."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping = threading.Event()
        try:
            context = self._prepare_tls() if self._scheme == "https" else None
            if self.source is ManagedIdentitySource.AZURE_ARC:
                self._key_directory = self._prepare_key_directory()
            if self.source is ManagedIdentitySource.WORKLOAD_IDENTITY:
                self._prepare_token_file()
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            server = _Server((self.host, self.port), family, self, context)
        except BaseException:
            self._cleanup_files()
            raise
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"msi-emulator-{self.source.value}",
            daemon=True,
        )
        with self._lock:
            self._server, self._thread = server, thread
            self._bound = (self.host, int(server.server_address[1]))
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, close live connections and remove files the emulator wrote; idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._stopping.set()
            connections = list(self._connections)
            threads = list(self._threads)
        if server is not None:
            server.shutdown()
            server.server_close()
        for connection in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_JOIN_TIMEOUT
        for worker in [*threads, *([thread] if thread is not None else [])]:
            if worker is not threading.current_thread():
                worker.join(max(0.0, deadline - time.monotonic()))
        self._cleanup_files()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._bound is not None else "not started"
        return f"Emulator(source={self.source.value!r}, {where})"

    # ------------------------------------------------------------------ what a credential needs

    @property
    def url(self) -> str:
        """The full token endpoint URL."""
        return self._base() + self._path

    @property
    def environ(self) -> dict[str, str]:
        """The environment variables that point a credential at this emulator."""
        base = self._base()
        values = {
            "url": self.url,
            "base": base,
            "secret": self.secret,
            "thumbprint": self.thumbprint,
            "default_client_id": self.default_client_id,
            "token_file": self._token_file,
            "tenant": self.tenant_id,
            "client_id": self.system_identity.client_id,
        }
        environ = wire.environment(self._spec, values)
        if self.token_proxy and self._ca_file is not None:
            # Without enable_azure_proxy a client goes to AZURE_AUTHORITY_HOST: this same loopback server, whose
            # certificate names neither its address nor a public CA, so the handshake fails and nothing is sent.
            environ.update(
                AZURE_KUBERNETES_TOKEN_PROXY=base + (self.proxy_path or "/"),
                AZURE_KUBERNETES_CA_FILE=self._ca_file,
                AZURE_KUBERNETES_SNI_NAME=TOKEN_PROXY_SERVER_NAME,
            )
        return environ

    @property
    def ca_file(self) -> str | None:
        """The PEM file of the certificate authority made for this run (None over plain http, or with ``tls_cert``).

        It signed the server certificate (for 127.0.0.1, ::1 and localhost) and nothing else; it is removed at stop.
        """
        return self._ca_file

    @property
    def ca_bundle_file(self) -> str | None:
        """A PEM bundle of the usual public roots (certifi's, else the system's) plus this run's CA, for variables
        that replace a client's roots rather than add to them (REQUESTS_CA_BUNDLE, SSL_CERT_FILE)."""
        return self._ca_bundle

    @property
    def trust_environ(self) -> dict[str, str]:
        """The variables that make each SDK family trust this run's CA (empty over plain http).

        NODE_EXTRA_CA_CERTS adds the CA to Node.js's roots; REQUESTS_CA_BUNDLE (requests: azure-identity sync,
        msal) and SSL_CERT_FILE (OpenSSL's default file: Python's ssl and aiohttp, Go, .NET on Linux, curl) replace
        the roots, so they name the bundle that keeps the public roots.
        """
        if self._ca_file is None or self._ca_bundle is None or self.token_proxy:
            return {}  # the token proxy's CA is named by AZURE_KUBERNETES_CA_FILE instead
        return {
            "NODE_EXTRA_CA_CERTS": self._ca_file,
            "REQUESTS_CA_BUNDLE": self._ca_bundle,
            "SSL_CERT_FILE": self._ca_bundle,
        }

    @property
    def key_directory(self) -> str | None:
        """Azure Arc: the directory the challenge key files are written to (None before start)."""
        return self._key_directory

    @property
    def credential_kwargs(self) -> dict[str, Any]:
        """Extra private constructor arguments the credential needs (Azure Arc: the key directory)."""
        if self.source is ManagedIdentitySource.AZURE_ARC:
            if self._key_directory is None:
                raise RuntimeError("start the emulator first")
            return {"_arc_key_directory": self._key_directory}
        return {}

    # ------------------------------------------------------------------ workload identity

    @property
    def federated_token_file(self) -> str:
        """Workload identity: the path of the federated token file (AZURE_FEDERATED_TOKEN_FILE) the emulator wrote."""
        if self.source is not ManagedIdentitySource.WORKLOAD_IDENTITY:
            raise RuntimeError("only the workload identity emulator has a federated token file")
        with self._lock:
            path = self._token_file
        if path is None:
            raise RuntimeError("start the emulator first")
        return path

    @property
    def assertion(self) -> str:
        """Workload identity: the client assertion the federated token file holds now (the only one accepted)."""
        self.federated_token_file  # noqa: B018 - the same checks
        with self._lock:
            assert self._assertion is not None
            return self._assertion

    def rotate_assertion(self) -> str:
        """Write a new client assertion to the federated token file and return it; the old one is refused from now on.

        The file is replaced atomically, as the kubelet does: a reader sees the old or the new assertion, never a mix.
        """
        path = self.federated_token_file
        assertion = self._mint_assertion()
        with self._lock:
            _write_atomically(path, assertion)
            if self._assertion is not None:
                self._retired_assertions.add(self._assertion)
            self._assertion = assertion
        return assertion

    def rotate_proxy_ca(self) -> str:
        """AKS token proxy: a new CA and server certificate, as the cluster rotates them. The server presents the new
        certificate from now on, the CA file (AZURE_KUBERNETES_CA_FILE) is replaced atomically with the new CA, and
        open connections are closed so clients must handshake again. Returns the CA file's path."""
        if not self.token_proxy:
            raise RuntimeError("only the AKS token proxy emulator (token_proxy=True) has a CA to rotate")
        with self._lock:
            server = self._server
        if server is None or self._ca_file is None:
            raise RuntimeError("start the emulator first")
        certfile, keyfile, ca_pem = self._issue_proxy_certificate(os.path.dirname(self._ca_file))
        server.ssl_context = self._server_context(certfile, keyfile)
        _write_atomically(self._ca_file, ca_pem)
        os.chmod(self._ca_file, 0o644)
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(connection, socket.SHUT_RDWR)
        return self._ca_file

    # ------------------------------------------------------------------ scripting and inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    @property
    def tokens_issued(self) -> int:
        """How many access tokens the emulator minted and answered with."""
        with self._lock:
            return len(self._tokens)

    def issued_tokens(self) -> list[str]:
        """The access tokens minted, in order."""
        with self._lock:
            return list(self._tokens)

    def script(self, *faults: Fault) -> None:
        """Answer the next ``len(faults)`` requests with these, in order, then behave normally again."""
        for fault in faults:
            if not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._lock:
            self._faults.extend(faults)

    def clear(self) -> None:
        """Forget recorded requests, scripted faults, issued tokens and the count of random failures.

        A failure rate set with ``fail_randomly`` stays in force.
        """
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._tokens.clear()
            self._random_failures = 0

    def fail_randomly(
        self, rate: float, statuses: Sequence[int] = (500, 429), seed: int | None = None
    ) -> None:
        """From now on fail each token request with probability ``rate`` (0 to 1), answering a status drawn from
        ``statuses`` in the source's error shape; a 429 carries ``Retry-After: 0``. ``fail_randomly(0)`` turns it off.

        Scripted faults go first and are never replaced; requests to other paths are not failed. ``seed`` makes the
        sequence of draws repeatable (a concurrent client still decides which request meets which draw).
        """
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError("rate must be a number from 0 to 1")
        if not 0.0 <= rate <= 1.0 or math.isnan(rate):
            raise ValueError("rate must be from 0 to 1")
        chosen = tuple(statuses)
        if not chosen:
            raise ValueError("statuses must not be empty")
        for status in chosen:
            if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError(f"statuses must be ints from 400 to 599, not {status!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError("seed must be an int or None")
        with self._lock:
            self._failure_rate = float(rate)
            self._failure_statuses = chosen
            self._random = random.Random(seed)  # noqa: S311 - fault injection, not security

    @property
    def random_failures(self) -> int:
        """How many requests ``fail_randomly`` has failed (since construction or the last ``clear()``)."""
        with self._lock:
            return self._random_failures

    # ------------------------------------------------------------------ internals used by the handler

    def _base(self) -> str:
        if self._bound is None:
            raise RuntimeError("start the emulator first")
        host, port = self._bound
        return f"{self._scheme}://{_bracket(host)}:{port}"

    def _record(self, request: RecordedRequest) -> Fault | None:
        with self._lock:
            self._requests.append(request)
            if self._faults:
                return self._faults.popleft()
            if (
                self._failure_rate > 0.0
                and wire.path_matches(self._path, request.path)
                and self._random.random() < self._failure_rate
            ):
                status = self._random.choice(self._failure_statuses)
                self._random_failures += 1
                return Fault(status, headers={"Retry-After": "0"} if status == 429 else None)
            return None

    def _wait(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _fault_reply(self, fault: Fault) -> Reply:
        body: wire.JsonBody
        if fault.body is None:
            body = b"" if fault.status < 400 else wire.default_error(self._spec, fault.status)
        elif isinstance(fault.body, str):
            body = fault.body.encode("utf-8")
        else:
            body = fault.body
        return Reply(fault.status, body, dict(fault.headers or {}))

    def _answer(self, request: RecordedRequest) -> Reply:
        spec = self._spec
        if self.source is ManagedIdentitySource.WORKLOAD_IDENTITY:
            return self._answer_workload(request)
        refusal = wire.check_request(spec, request, self.secret)
        if refusal is not None:
            return refusal
        if self.source is ManagedIdentitySource.AZURE_ARC and not self._arc_authorized(request):
            return self._arc_challenge()
        params = wire.parameters(spec, request)
        selectors = wire.selectors_of(spec, params)
        identity = wire.resolve_identity(
            spec, selectors, list(self.identities), self.system_identity, self.default_client_id
        )
        if identity is None:
            return wire.not_found_reply(spec)
        return self._issue(params["resource"], identity, selectors, int(self._clock()))

    def _answer_workload(self, request: RecordedRequest) -> Reply:
        if self.token_proxy:
            # the proxy forwards what is under its path to Entra, the path below it unchanged
            prefix = self.proxy_path + "/"
            if not request.path.startswith(prefix):
                return wire.entra_error(
                    404, "not_found", None, f"No endpoint at {request.path}.", now=self._clock()
                )
            request = dataclasses.replace(request, path=request.path[len(self.proxy_path) :])
        with self._lock:
            path, retired = self._token_file, set(self._retired_assertions)
        now = self._clock()
        grant = wire.check_workload_request(
            request,
            tenant_id=self.tenant_id,
            identities=[self.system_identity, *self.identities],
            assertion=_read_assertion(path) if path is not None else None,
            retired=retired,
            now=now,
            authority=self._base(),
        )
        if isinstance(grant, Reply):
            return grant
        return self._issue(grant.resource, grant.identity, {}, int(now))

    def _issue(
        self,
        resource: str,
        identity: UserAssignedIdentity,
        selectors: Mapping[str, str],
        now: int,
    ) -> Reply:
        lifetime = int(self.token_lifetime)
        claims = entra_v1_claims(
            resource=resource,
            tenant_id=self.tenant_id,
            client_id=identity.client_id,
            object_id=identity.object_id,
            resource_id=identity.resource_id,
            now=now,
            lifetime=lifetime,
        )
        token = mint_jwt(claims, self._signing_key)
        with self._lock:
            self._tokens.append(token)
        return wire.token_reply(
            self._spec,
            access_token=token,
            resource=resource,
            now=now,
            lifetime=lifetime,
            identity=identity,
            selectors=selectors,
        )

    def _arc_authorized(self, request: RecordedRequest) -> bool:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        key = key.strip()
        if scheme.lower() != "basic" or not key:
            return False
        now = self._clock()
        with self._lock:
            for issued, expiry in list(self._arc_keys.items()):
                if expiry <= now:
                    del self._arc_keys[issued]
            return self._arc_keys.pop(key, None) is not None  # single use

    def _arc_challenge(self) -> Reply:
        directory = self._key_directory
        if directory is None:
            raise RuntimeError("Azure Arc key directory missing")
        key = secrets.token_hex(32)
        path = os.path.join(directory, f"{uuid.uuid4()}.key")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _ARC_KEY_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="ascii") as stream:
            _give_to_agent_group(stream.fileno())
            stream.write(key)
        with self._lock:
            self._arc_keys[key] = self._clock() + ARC_KEY_VALIDITY
            self._arc_files.append(path)
        return wire.error_reply(
            self._spec,
            401,
            "challenge",
            "Authorization required: read the key file named in WWW-Authenticate",
            {"WWW-Authenticate": f"Basic realm={path}"},
        )

    def _track(self, connection: socket.socket) -> bool:
        with self._lock:
            if self._stopping.is_set():
                return False
            self._connections.add(connection)
            self._threads.add(threading.current_thread())
            return True

    def _retrack(self, old: socket.socket, new: socket.socket) -> None:
        with self._lock:
            self._connections.discard(old)
            self._connections.add(new)
            stopping = self._stopping.is_set()
        if stopping:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(new, socket.SHUT_RDWR)

    def _untrack(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
            self._threads.discard(threading.current_thread())

    # ------------------------------------------------------------------ files

    def _prepare_tls(self) -> ssl.SSLContext:
        if self.token_proxy:
            certfile, keyfile = self._make_proxy_certificate()
        elif self._tls_cert is None:
            certfile, keyfile = self._make_certificate()
        else:
            certfile, keyfile = self._tls_cert
        return self._server_context(certfile, keyfile)

    def _server_context(self, certfile: str, keyfile: str) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(certfile, keyfile)
        # Any server name is answered with this certificate, as most TLS servers do: refusing a wrong SNI is the
        # client's job, and the recorded server_name shows what it sent.
        context.sni_callback = _record_server_name
        self.thumbprint = _leaf_thumbprint(certfile)
        return context

    def _make_proxy_certificate(self) -> tuple[str, str]:
        """The AKS token proxy's first CA and certificate, in a directory of this run; the CA file is
        AZURE_KUBERNETES_CA_FILE."""
        directory = os.path.realpath(tempfile.mkdtemp(prefix="msi-emulator-proxy-"))
        self._temp_dirs.append(directory)
        certfile, keyfile, ca_pem = self._issue_proxy_certificate(directory)
        ca_file = os.path.join(directory, "token-proxy-ca.pem")
        _write_atomically(ca_file, ca_pem)
        os.chmod(ca_file, 0o644)
        os.chmod(directory, 0o755)  # noqa: S103 - public CA files; the server keys inside stay 0600
        self._ca_file = ca_file
        return certfile, keyfile

    def _issue_proxy_certificate(self, directory: str) -> tuple[str, str, str]:
        """A new CA (its key only in memory) and a server certificate it signs for TOKEN_PROXY_SERVER_NAME only."""
        try:
            import trustme
        except ImportError:
            raise EmulatorSetupError(
                "the AKS token proxy emulator serves https with a certificate authority made for each run, "
                f"which needs the emulator extra: {EMULATOR_EXTRA_HINT}"
            ) from None
        authority = trustme.CA(organization_name="msi-credential emulator AKS token proxy (this run only)")
        leaf = authority.issue_cert(TOKEN_PROXY_SERVER_NAME)
        serial = uuid.uuid4().hex[:12]
        certfile = os.path.join(directory, f"server-cert-{serial}.pem")
        keyfile = os.path.join(directory, f"server-key-{serial}.pem")
        leaf.cert_chain_pems[0].write_to_path(certfile)
        descriptor = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(leaf.private_key_pem.bytes())
        return certfile, keyfile, authority.cert_pem.bytes().decode("ascii")

    def _make_certificate(self) -> tuple[str, str]:
        """A certificate authority made for this run and a loopback server certificate it signs; the CA's key
        stays in memory, so nothing else can ever be signed by it."""
        try:
            import trustme
        except ImportError:
            raise EmulatorSetupError(
                f"the {self.source.value} emulator serves https with a certificate authority made for each run, "
                f"which needs the emulator extra: {EMULATOR_EXTRA_HINT}"
            ) from None
        authority = trustme.CA(organization_name="msi-credential emulator (this run only)")
        leaf = authority.issue_cert("127.0.0.1", "::1", "localhost")
        directory = os.path.realpath(tempfile.mkdtemp(prefix="msi-emulator-tls-"))
        self._temp_dirs.append(directory)
        certfile = os.path.join(directory, "server-cert.pem")
        keyfile = os.path.join(directory, "server-key.pem")
        ca_file = os.path.join(directory, "ca.pem")
        bundle = os.path.join(directory, "ca-bundle.pem")
        leaf.cert_chain_pems[0].write_to_path(certfile)
        descriptor = os.open(keyfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(leaf.private_key_pem.bytes())
        authority.cert_pem.write_to_path(ca_file)
        with open(bundle, "wb") as stream:
            stream.write(_public_roots() + b"\n" + authority.cert_pem.bytes())
        for path in (ca_file, bundle, certfile):
            os.chmod(path, 0o644)  # the CA and bundle are public: clients of other users may read them
        os.chmod(directory, 0o755)  # noqa: S103 - public CA files; the server key inside stays 0600
        self._ca_file, self._ca_bundle = ca_file, bundle
        return certfile, keyfile

    def _prepare_key_directory(self) -> str:
        if self._arc_key_directory is None:
            directory = os.path.realpath(tempfile.mkdtemp(prefix="msi-emulator-arc-"))
            self._temp_dirs.append(directory)
            return directory
        directory = self._arc_key_directory
        missing: list[str] = []
        parent = directory
        while not os.path.lexists(parent):
            missing.append(parent)
            following = os.path.dirname(parent)
            if following == parent:
                break
            parent = following
        try:
            for path in reversed(missing):
                os.mkdir(path, _ARC_DIRECTORY_MODE if path == directory else 0o755)
                self._created_dirs.append(path)
                if path == directory:
                    os.chmod(path, _ARC_DIRECTORY_MODE)
                    _give_to_agent_group(path)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, "no write permission", directory)
        except OSError as error:
            self._remove_created_dirs()
            raise EmulatorSetupError(
                f"cannot write Azure Arc key files in {directory} ({error.strerror or type(error).__name__}). "
                "Azure Arc clients read the challenge key only from that directory, as the Connected Machine agent "
                "writes it: run the emulator with the rights to write there (e.g. with sudo), or create it once "
                f'for your user: sudo install -d -m 0770 -o "$USER" {directory}'
            ) from None
        return directory

    def _remove_created_dirs(self) -> None:
        created, self._created_dirs = self._created_dirs, []
        for path in reversed(created):
            with contextlib.suppress(OSError):
                os.rmdir(path)  # only when empty: another program may have put files there since

    def _prepare_token_file(self) -> None:
        directory = os.path.realpath(tempfile.mkdtemp(prefix="msi-emulator-wi-"))
        path = os.path.join(directory, FEDERATED_TOKEN_FILE_NAME)
        assertion = self._mint_assertion()
        with self._lock:
            self._temp_dirs.append(directory)
            _write_atomically(path, assertion)
            self._token_file, self._assertion = path, assertion
            self._retired_assertions.clear()

    def _mint_assertion(self) -> str:
        """A JWT shaped like a projected Kubernetes service account token for workload identity."""
        now = int(self._clock())
        claims = {
            "aud": ["api://AzureADTokenExchange"],
            "iss": f"https://oidc.msi-emulator.invalid/{self.tenant_id}/",
            "sub": "system:serviceaccount:default:workload-identity-sa",
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        return mint_jwt(claims, self._assertion_key)

    def _cleanup_files(self) -> None:
        with self._lock:
            files, self._arc_files = self._arc_files, []
            directories, self._temp_dirs = self._temp_dirs, []
            self._arc_keys.clear()
            self._token_file = self._assertion = None
            self._retired_assertions.clear()
        for path in files:
            with contextlib.suppress(OSError):
                os.remove(path)
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
        self._ca_file = self._ca_bundle = None
        self._remove_created_dirs()
