"""The guard itself: it must catch a non-loopback connect even when the code under test swallows errors."""

from __future__ import annotations

import socket

import pytest

from .conftest import NonLoopbackConnection


def test_socket_guard_refuses_non_loopback_connect(socket_guard: list[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NonLoopbackConnection):
            sock.connect(("169.254.169.254", 80))
    finally:
        sock.close()
    assert socket_guard == ["('169.254.169.254', 80)"]
    socket_guard.clear()  # the violation was the point of this test


def test_socket_guard_allows_loopback(socket_guard: list[str]) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
    finally:
        client.close()
        server.close()
    assert socket_guard == []
