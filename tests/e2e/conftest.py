"""End-to-end fixtures: Azurite (the Azure Storage emulator, pinned in package-lock.json) over HTTPS with OAuth.

Azurite runs as a separate node process on 127.0.0.1, started once per session with a certificate from a
throwaway trustme CA and ``--oauth basic``: it checks each bearer token's issuer, audience and lifetime
(docs/protocols.md section 11). Without ``node_modules/.bin/azurite-blob`` the Azurite tests skip locally and fail
when the ``CI`` variable is set; an installed Azurite that does not start always fails.

The Key Vault stand-ins of tests/https_stand_in.py share one certificate per test module (``vault_tls``).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from msi_credential.emulator import Emulator

from ..https_stand_in import Tls

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
AZURITE_VERSION = "3.37.0"
ACCOUNT = "devstoreaccount1"
STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a free port can be taken between our probe and Azurite's bind

_STARTUP_KEY = pytest.StashKey[float]()

# Source to run first in a Python subprocess a test starts: the socket guard of tests/conftest.py is
# per process, so the subprocess gets its own (any connection off loopback raises).
LOOPBACK_GUARD = """
import ipaddress as _ipaddress, socket as _socket

def _install_loopback_guard():
    def check(sock, address):
        if sock.family in (_socket.AF_INET, _socket.AF_INET6):
            host = str(address[0]).split("%", 1)[0]
            try:
                loopback = host == "localhost" or _ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise AssertionError(f"test subprocess tried to connect to non-loopback {address!r}")

    for name in ("connect", "connect_ex"):
        def guarded(sock, address, _original=getattr(_socket.socket, name)):
            check(sock, address)
            return _original(sock, address)
        setattr(_socket.socket, name, guarded)

_install_loopback_guard()
"""


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway CA and a loopback server certificate it issued."""

    ca_path: str
    cert_path: str
    key_path: str


@dataclass(frozen=True)
class Azurite:
    """A running Azurite blob service."""

    endpoint: str
    ca_path: str
    startup_seconds: float
    log_path: Path

    @property
    def account_url(self) -> str:
        """The path-style account URL (an IP host means the account is the first path segment)."""
        return f"{self.endpoint}/{ACCOUNT}"


def require_azurite_installed() -> None:
    """Skip (locally) or fail (when CI is set) if Azurite is not installed from the lockfile."""
    if AZURITE_BLOB.exists():
        return
    message = f"Azurite is not installed ({AZURITE_BLOB} is missing): run `npm ci` in {REPO_ROOT}"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the e2e tests must run: {message}", pytrace=False)
    pytest.skip(message)


def container_name() -> str:
    """A fresh container name (Azurite's data lives for the whole session)."""
    return f"e2e-{uuid.uuid4().hex[:16]}"


def sync_credential(emulator: Emulator, **kwargs: Any) -> Any:
    """A sync credential pointed at the emulator, with its own cache."""
    from msi_credential import ManagedIdentityCredential

    return ManagedIdentityCredential(
        _environ=emulator.environ, share_cache=False, **emulator.credential_kwargs, **kwargs
    )


def async_credential(emulator: Emulator, **kwargs: Any) -> Any:
    """An async credential pointed at the emulator, with its own cache."""
    from msi_credential.aio import ManagedIdentityCredential

    return ManagedIdentityCredential(
        _environ=emulator.environ, share_cache=False, **emulator.credential_kwargs, **kwargs
    )


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A trustme CA (ca.pem) and a certificate for 127.0.0.1, localhost and ::1 (cert.pem, key.pem)."""
    import trustme

    directory = tmp_path_factory.mktemp("tls")
    authority = trustme.CA()
    leaf = authority.issue_cert("127.0.0.1", "localhost", "::1")
    files = TlsFiles(
        ca_path=str(directory / "ca.pem"),
        cert_path=str(directory / "cert.pem"),
        key_path=str(directory / "key.pem"),
    )
    authority.cert_pem.write_to_path(files.ca_path)
    Path(files.cert_path).write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(files.key_path)
    return files


@pytest.fixture(scope="module")
def vault_tls() -> Iterator[Tls]:
    """A certificate for ``*.vault.azure.net`` from its own CA, for a Key Vault stand-in (one per test module)."""
    files = Tls("*.vault.azure.net")
    yield files
    files.cleanup()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _answers_tls(port: int, ca_path: str) -> bool:
    """True once our Azurite completes a TLS handshake with a certificate from our CA."""
    context = ssl.create_default_context(cafile=ca_path)
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        with raw, context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except (OSError, ssl.SSLError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT)


def _installed_version() -> str:
    manifest = REPO_ROOT / "node_modules" / "azurite" / "package.json"
    try:
        version: str = json.loads(manifest.read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError):
        return "unknown"
    return version


def _start(
    tls: TlsFiles, directory: Path, attempt: int, service: str = "blob"
) -> tuple[subprocess.Popen[bytes], int, float, Path]:
    port = _free_port()
    location = directory / f"data-{attempt}"
    location.mkdir()
    log_path = directory / f"azurite-{attempt}.log"
    command = [
        str(AZURITE_BLOB.with_name(f"azurite-{service}")),
        f"--{service}Host",
        "127.0.0.1",
        f"--{service}Port",
        str(port),
        "--oauth",
        "basic",
        "--cert",
        tls.cert_path,
        "--key",
        tls.key_path,
        "--location",
        str(location),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=directory
        )
    deadline = started + STARTUP_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if _answers_tls(port, tls.ca_path):
            return process, port, time.monotonic() - started, log_path
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(0.05)  # returns at once if Azurite exits
    _stop(process)
    return process, port, -1.0, log_path


def _serve(service: str, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite service over HTTPS on a free loopback port, with OAuth bearer checks on."""
    require_azurite_installed()
    version = _installed_version()
    if version != AZURITE_VERSION:
        pytest.fail(
            f"Azurite {version} is installed, the lockfile pins {AZURITE_VERSION}: run `npm ci` in {REPO_ROOT}",
            pytrace=False,
        )
    directory = tmp_path_factory.mktemp(f"azurite-{service}")
    for attempt in range(START_ATTEMPTS):
        process, port, seconds, log_path = _start(tls_files, directory, attempt, service)
        if seconds >= 0:
            break
        log = log_path.read_text(encoding="utf-8", errors="replace")
        if "EADDRINUSE" not in log or attempt == START_ATTEMPTS - 1:
            pytest.fail(
                f"Azurite {service} did not start within {STARTUP_TIMEOUT:.0f} s (exit code "
                f"{process.returncode}); its output:\n{log}",
                pytrace=False,
            )
    try:
        yield Azurite(f"https://127.0.0.1:{port}", tls_files.ca_path, seconds, log_path)
    finally:
        _stop(process)


@pytest.fixture(scope="session")
def azurite(
    request: pytest.FixtureRequest, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Azurite]:
    """Azurite's blob service over HTTPS on a free loopback port, with OAuth bearer checks on."""
    for running in _serve("blob", tls_files, tmp_path_factory):
        request.config.stash[_STARTUP_KEY] = running.startup_seconds
        yield running


@pytest.fixture(scope="session")
def azurite_queue(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's queue service, like ``azurite``."""
    yield from _serve("queue", tls_files, tmp_path_factory)


@pytest.fixture(scope="session")
def azurite_table(tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """Azurite's table service, like ``azurite`` (Azurite checks bearer tokens for tables too)."""
    yield from _serve("table", tls_files, tmp_path_factory)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    seconds = config.stash.get(_STARTUP_KEY, None)
    if seconds is not None:
        terminalreporter.write_sep("-", "azurite")
        terminalreporter.write_line(
            f"Azurite {AZURITE_VERSION} start-up (HTTPS, --oauth basic): {seconds:.2f} s"
        )
