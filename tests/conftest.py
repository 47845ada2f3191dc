"""Test-wide guards: no managed identity variables leak in, and no socket leaves this machine."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from msi_credential import _errors
from msi_credential._engine import cache, flow
from msi_credential._engine.detection import VARIABLES

MANAGED_IDENTITY_VARIABLES = (
    *VARIABLES,
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "MSI_CREDENTIAL_MACHINE_CACHE",
)


@pytest.fixture(autouse=True)
def clear_managed_identity_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def fresh_engine_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    cache.clear_shared_cache()
    flow.forget_answers()
    # The azure-identity interop error class is made once per process: each test makes its own.
    monkeypatch.setattr(_errors, "_interop_class", None)
    yield
    cache.clear_shared_cache()
    flow.forget_answers()


def _is_loopback(address: Any, family: int) -> bool:
    if family == getattr(socket, "AF_UNIX", None):
        return True
    if not isinstance(address, tuple) or not address:
        return False
    host = str(address[0]).split("%", 1)[0]
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


class NonLoopbackConnection(AssertionError):
    """A test tried to reach an address off this machine."""


@pytest.fixture(autouse=True)
def socket_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse, and fail the test for, any connection to an address outside 127.0.0.0/8 and ::1."""
    violations: list[str] = []
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def check(sock: socket.socket, address: Any) -> None:
        if not _is_loopback(address, sock.family):
            violations.append(repr(address))
            raise NonLoopbackConnection(f"test tried to connect to non-loopback {address!r}")

    def guarded_connect(sock: socket.socket, address: Any) -> None:
        check(sock, address)
        original_connect(sock, address)

    def guarded_connect_ex(sock: socket.socket, address: Any) -> int:
        check(sock, address)
        return original_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    yield violations
    if violations:
        pytest.fail(f"non-loopback connection attempted: {violations}")


# ---------------------------------------------------------------------------------------------------------------
# Both faces: every shared test runs against the sync and the async credential through one small adapter.


class Face:
    """Builds credentials of one face and calls them synchronously (the async face in its own event loop)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sleeps: list[float] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._credentials: list[Any] = []

    @property
    def is_async(self) -> bool:
        return self.name == "async"

    def _run(self, value: Any) -> Any:
        if not self.is_async:
            return value
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(value)

    def credential(self, emulator: Any = None, **kwargs: Any) -> FaceCredential:
        """A credential of this face; pointed at ``emulator`` when given, with a recording sleeper."""
        if emulator is not None:
            kwargs.setdefault("_environ", dict(emulator.environ))
            for key, value in emulator.credential_kwargs.items():
                kwargs.setdefault(key, value)
        kwargs.setdefault("_environ", {})
        kwargs.setdefault("share_cache", False)
        # the refresh point exactly at refresh_on, unless the test gives its own random source (cache.spread)
        kwargs.setdefault("_random", lambda: 0.0)
        if self.is_async:
            from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

            async def sleep(seconds: float) -> None:
                self.sleeps.append(seconds)

            kwargs.setdefault("_sleep", sleep)
            credential: Any = AsyncCredential(**kwargs)
        else:
            from msi_credential import ManagedIdentityCredential

            kwargs.setdefault("_sleep", self.sleeps.append)
            credential = ManagedIdentityCredential(**kwargs)
        self._credentials.append(credential)
        return FaceCredential(self, credential)

    def close(self) -> None:
        for credential in self._credentials:
            self._run(credential.close())
        if self._loop is not None:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()


class FaceCredential:
    """The same calls on either face: get_token, get_token_info, source, close."""

    def __init__(self, face: Face, credential: Any) -> None:
        self.face = face
        self.inner = credential

    @property
    def source(self) -> Any:
        return self.inner.source

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        return self.face._run(self.inner.get_token(*scopes, **kwargs))

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        return self.face._run(self.inner.get_token_info(*scopes, **kwargs))

    def close(self) -> None:
        self.face._run(self.inner.close())

    def settle(self) -> None:
        """Let the refreshes running beside the callers end (the async face runs its loop until they have)."""
        if self.face.is_async:
            self.face._run(self.inner._driver.settle())
        else:
            assert self.inner._driver.settle(30)

    def refreshing(self) -> int:
        """How many refreshes this credential runs beside its callers that have not ended."""
        return sum(1 for job in self.inner._driver._jobs if not getattr(job, "done", lambda: False)())


@pytest.fixture(params=["sync", "async"])
def face(request: pytest.FixtureRequest) -> Iterator[Face]:
    """Parametrises a test over both credential faces: any divergence fails one of them."""
    adapter = Face(request.param)
    yield adapter
    adapter.close()


@pytest.fixture
def in_credential_chain() -> Iterator[None]:
    """Calls in the test run as inside azure-identity's ChainedTokenCredential / DefaultAzureCredential: its
    ``within_credential_chain`` context variable is set, as those credentials set it around their members' calls
    (the async face's calls run in tasks, which copy this context)."""
    from azure.identity._internal import utils

    reset = utils.within_credential_chain.set(True)
    yield
    utils.within_credential_chain.reset(reset)


@pytest.fixture
def emulator_factory() -> Iterator[Any]:
    """Start emulators for a test and stop them after it."""
    from msi_credential.emulator import Emulator

    started: list[Any] = []

    def start(source: str = "imds", **kwargs: Any) -> Any:
        emulator = Emulator(source, **kwargs).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in started:
        emulator.stop()


@pytest.fixture
def emulator(emulator_factory: Any) -> Any:
    """An emulated IMDS, started for a test and stopped after it (a file may define its own ``emulator``)."""
    return emulator_factory("imds")


@pytest.fixture
def proxy(emulator_factory: Any) -> Any:
    """The emulator of workload identity behind the AKS token proxy (HTTPS, its own CA, a server name that is not
    its address), started for a test and stopped after it."""
    return emulator_factory("workload_identity", token_proxy=True)


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> None:
    """The package's loggers at DEBUG for the test (caplog restores the level after it)."""
    caplog.set_level(logging.DEBUG, logger="msi_credential")


@pytest.fixture
def unused_port() -> Iterator[int]:
    """A loopback port nothing listens on (connections are refused). It stays bound, without listening, for
    the whole test: a closed port could be handed to another listener meanwhile."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    yield port
    sock.close()


# The fixtures that start a loopback server. A test that uses one, directly or through another fixture, is marked
# `loopback`; the mutation run (docs/mutation.md) takes only the others, which need no socket.
LOOPBACK_FIXTURES = frozenset(
    {
        "emulator_factory",
        "raw_server",
        "capturing_server",
        "slow_first_connect_imds",
        "blackhole_port",
        "unused_port",
        "msi_emulator",
        "msi_emulator_session",
        "azurite",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LOOPBACK_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.loopback)


# Figures that tests measure (soak, memory), printed at the end of the run whether or not -s is given.
FIGURES: list[str] = []


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("figures")
        for line in FIGURES:
            terminalreporter.write_line(line)
