"""Test-wide guards: no managed identity variables leak in, and no socket leaves this machine."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from msi_credential._engine import cache, flow

MANAGED_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "DEFAULT_IDENTITY_CLIENT_ID",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
)


@pytest.fixture(autouse=True)
def clear_managed_identity_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in MANAGED_IDENTITY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def fresh_engine_state() -> Iterator[None]:
    cache.clear_shared_cache()
    flow.forget_imds_answers()
    yield
    cache.clear_shared_cache()
    flow.forget_imds_answers()


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
