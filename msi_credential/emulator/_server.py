"""``Emulator``: one managed identity endpoint on loopback. The plumbing every source shares lives here and in
``_http`` and ``_tls`` (server, TLS, request recording, fault injection, token minting); what a source says on the
wire lives in its module under ``sources/``."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Union

from msi_credential._source import ManagedIdentitySource

from ._http import Server
from ._scenarios import Scenario
from ._scenarios import scenario as make_scenario
from ._tls import LoopbackFiles, make_loopback_certificate, server_context
from ._tokens import entra_v1_claims, mint_jwt
from ._wire import (
    RECORDED_REQUESTS,
    EmulatorSetupError,
    JsonBody,
    Minted,
    RecordedRequest,
    Recording,
    Reply,
    UserAssignedIdentity,
    path_matches,
    write_atomically,
)
from .sources import ENDPOINTS, TokenProxy, WorkloadIdentity
from .sources.azure_arc import ARC_KEY_DIRECTORY
from .sources.token_proxy import TOKEN_PROXY_PATH, TOKEN_PROXY_SERVER_NAME

__all__ = ["ARC_KEY_DIRECTORY", "TOKEN_PROXY_SERVER_NAME", "Emulator", "EmulatorSetupError", "Fault"]

_STOP_JOIN_TIMEOUT = 2.0
_TOKENS_KEPT = 1000  # issued_tokens(): the most recent; tokens_issued counts them all

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


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


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
        record_limit: int | None = RECORDED_REQUESTS,
        scenario: str | Scenario | None = None,
    ) -> None:
        self.source = ManagedIdentitySource(source)
        # An incident to replay (a name of docs/testing.md's catalogue, or a configured Scenario); None: no incident.
        self.scenario = make_scenario(scenario) if scenario is not None else None
        if self.scenario is not None:
            self.scenario.check_source(self.source)
        endpoint_class = TokenProxy if token_proxy else ENDPOINTS[self.source]
        if token_proxy:
            if self.source is not ManagedIdentitySource.WORKLOAD_IDENTITY:
                raise ValueError("only the workload identity emulator plays the AKS token proxy")
            if tls is False or tls_cert is not None:
                raise ValueError("the AKS token proxy is served over https with a CA made for the run")
            if not proxy_path.startswith("/") or any(ch in proxy_path for ch in "?# "):
                raise ValueError("proxy_path must be a URL path starting with '/'")
        if tls is None:
            tls = endpoint_class.expects.scheme == "https"
        if not tls and endpoint_class.expects.scheme == "https":
            raise ValueError(f"{self.source.value} is served over https only")
        self._scheme = "https" if tls else "http"
        self.token_proxy = token_proxy
        self.proxy_path = proxy_path.rstrip("/") if token_proxy else ""
        self.proxy_server_name = endpoint_class.server_name
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

        self._lock = threading.Lock()
        self._recording = Recording(record_limit)
        self._faults: deque[Fault] = deque()
        self._tokens: deque[str] = deque(maxlen=_TOKENS_KEPT)
        self._tokens_issued = 0
        self._failure_rate = 0.0
        self._failure_statuses: tuple[int, ...] = (500, 429)
        self._random = random.Random()  # noqa: S311 - fault injection, not security
        self._random_failures = 0
        self._connections: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._stopping = threading.Event()

        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._temp_dirs: list[str] = []
        self._ca_file: str | None = None
        self._ca_bundle: str | None = None
        self._bound: tuple[str, int] | None = None
        self._endpoint = endpoint_class(self)  # this source's side of the wire
        self._path = self._endpoint.token_path()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Emulator:
        """Bind and serve in a background thread (a no-op when already running)."""
        with self._lock:
            if self._server is not None:
                return self
            self._stopping = threading.Event()
        try:
            context = self._prepare_tls() if self._scheme == "https" else None
            self._endpoint.prepare()
            scenario = self.scenario
            if scenario is not None:
                scenario.attach(self)
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            listen = scenario is None or scenario.listening(0.0)
            server = Server((self.host, self.port), family, self, context, listen=listen)
        except BaseException:
            self._cleanup_files()
            raise
        serve: Callable[..., None] = server.serve_forever
        if not listen and scenario is not None:
            serve = functools.partial(scenario.serve, server, self._stopping)
        thread = threading.Thread(
            target=serve,
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
        values = {
            "url": self.url,
            "base": self._base(),
            "secret": self.secret,
            "thumbprint": self.thumbprint,
            "default_client_id": self.default_client_id,
            "tenant": self.tenant_id,
            "client_id": self.system_identity.client_id,
        }
        return self._endpoint.environ(values)

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
        return self._endpoint.key_directory

    @property
    def credential_kwargs(self) -> dict[str, Any]:
        """Extra private constructor arguments the credential needs (Azure Arc: the key directory)."""
        return self._endpoint.credential_kwargs()

    # ------------------------------------------------------------------ workload identity

    @property
    def federated_token_file(self) -> str:
        """Workload identity: the path of the federated token file (AZURE_FEDERATED_TOKEN_FILE) the emulator wrote."""
        path = self._workload().token_file
        if path is None:
            raise RuntimeError("start the emulator first")
        return path

    @property
    def assertion(self) -> str:
        """Workload identity: the client assertion the federated token file holds now (the only one accepted)."""
        self.federated_token_file  # noqa: B018 - the same checks
        assertion = self._workload().assertion
        assert assertion is not None
        return assertion

    def rotate_assertion(self) -> str:
        """Write a new client assertion to the federated token file and return it; the old one is refused from now on.

        The file is replaced atomically, as the kubelet does: a reader sees the old or the new assertion, never a mix.
        """
        return self._workload().rotate_assertion(self.federated_token_file)

    def _workload(self) -> WorkloadIdentity:
        if not isinstance(self._endpoint, WorkloadIdentity):
            raise RuntimeError("only the workload identity emulator has a federated token file")
        return self._endpoint

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
        certfile, keyfile, ca_pem = self._issue_named_certificate(os.path.dirname(self._ca_file))
        server.ssl_context = self._server_context(certfile, keyfile)
        write_atomically(self._ca_file, ca_pem)
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
        """The requests received, in order (a copy): the most recent ``record_limit`` (1000 by default; None: no
        count limit), bodies cut to 64 KiB (``RecordedRequest.body_length``), and at most 32 MiB of them in all, so
        that memory stays bounded however long the emulator serves. ``requests_received`` counts every request."""
        with self._lock:
            return self._recording.requests()

    @property
    def requests_received(self) -> int:
        """How many requests the emulator received (since construction or the last ``clear()``), kept or not."""
        with self._lock:
            return self._recording.received

    @property
    def tokens_issued(self) -> int:
        """How many access tokens the emulator minted and answered with."""
        with self._lock:
            return self._tokens_issued

    def issued_tokens(self) -> list[str]:
        """The access tokens minted, in order: the most recent 1000 (``tokens_issued`` counts them all)."""
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
            self._recording.clear()
            self._faults.clear()
            self._tokens.clear()
            self._tokens_issued = 0
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
            self._recording.add(request)
            if self._faults:
                return self._faults.popleft()
            if self.scenario is not None:
                fault = self.scenario.fault(request)
                if fault is not None:
                    return fault
            if (
                self._failure_rate > 0.0
                and path_matches(self._path, request.path)
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
        body: JsonBody
        if fault.body is None:
            body = b"" if fault.status < 400 else self._endpoint.errors.default_body(fault.status)
        elif isinstance(fault.body, str):
            body = fault.body.encode("utf-8")
        else:
            body = fault.body
        return Reply(fault.status, body, dict(fault.headers or {}))

    def _mint(self, resource: str, identity: UserAssignedIdentity, now: int) -> Minted:
        """A new access token for ``identity`` and ``resource``, counted as issued."""
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
            self._tokens_issued += 1
        return Minted(token, resource, identity, now, lifetime)

    def _temp_dir(self, prefix: str) -> str:
        """A new directory of this run, removed at stop."""
        directory = os.path.realpath(tempfile.mkdtemp(prefix=prefix))
        with self._lock:
            self._temp_dirs.append(directory)
        return directory

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
        if self._endpoint.server_name is not None:
            certfile, keyfile = self._make_named_certificate()
        elif self._tls_cert is None:
            files: LoopbackFiles = make_loopback_certificate(
                self._temp_dir("msi-emulator-tls-"), f"the {self.source.value} emulator"
            )
            self._ca_file, self._ca_bundle = files.ca_file, files.ca_bundle
            certfile, keyfile = files.certfile, files.keyfile
        else:
            certfile, keyfile = self._tls_cert
        return self._server_context(certfile, keyfile)

    def _server_context(self, certfile: str, keyfile: str) -> ssl.SSLContext:
        context, self.thumbprint = server_context(certfile, keyfile)
        return context

    def _make_named_certificate(self) -> tuple[str, str]:
        """The first CA and certificate of an endpoint with a server name of its own (the AKS token proxy), in a
        directory of this run; the CA file is AZURE_KUBERNETES_CA_FILE."""
        directory = self._temp_dir("msi-emulator-proxy-")
        certfile, keyfile, ca_pem = self._issue_named_certificate(directory)
        ca_file = os.path.join(directory, "token-proxy-ca.pem")
        write_atomically(ca_file, ca_pem)
        os.chmod(ca_file, 0o644)
        os.chmod(directory, 0o755)  # noqa: S103 - public CA files; the server keys inside stay 0600
        self._ca_file = ca_file
        return certfile, keyfile

    def _issue_named_certificate(self, directory: str) -> tuple[str, str, str]:
        return self._endpoint.issue_certificate(directory)

    def _cleanup_files(self) -> None:
        self._endpoint.cleanup()
        with self._lock:
            directories, self._temp_dirs = self._temp_dirs, []
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)
        self._ca_file = self._ca_bundle = None
