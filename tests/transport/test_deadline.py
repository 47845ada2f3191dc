"""Whole-call deadlines (msi_credential/_transport/deadline.py, the sync driver's timer thread; the async driver
bounds its attempts in aio.py): endpoints that stall, trickle a body or headers, or send ``100 Continue`` forever
cannot hold a caller past its deadline, and leave no thread or socket behind. Both faces (the ``face`` fixture)
against loopback servers."""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Callable

import pytest

from msi_credential import ManagedIdentityError

from .support import SCOPE, app_service_environ, environ_for, read_request

# ------------------------------------------------------------------------------------------ trickling answers


def test_trickling_body_cannot_hold_the_caller_past_the_deadline(face: Any, raw_server: Any) -> None:
    """The body would take 100,000 x 50 ms: only the call's deadline (1.5 s) can end the call, and the
    credential, not the server, then closes the connection."""
    client_left = threading.Event()

    def trickle(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
        )
        try:
            while not server.stopping.wait(0.05):
                connection.sendall(b" ")
        except OSError:
            client_left.set()

    server = raw_server(trickle)
    credential = face.credential(
        _environ=app_service_environ(server.port), _deadline=1.5, read_timeout=5, retry_total=0
    )

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert client_left.wait(30)  # the server was still trickling: the credential gave up and hung up


def test_trickling_headers_cannot_hold_the_caller_past_the_deadline(face: Any, raw_server: Any) -> None:
    """Headers that never end, one every 0.2 s: only the call's deadline (1.5 s) can end the call before the
    header count reaches http.client's limit of 100 (which would end it too, after 20 s)."""
    header_lines = [0]

    def trickle(connection: socket.socket) -> None:
        read_request(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        while not server.stopping.wait(0.2):
            connection.sendall(b"X-Slow: 1\r\n")
            header_lines[0] += 1

    server = raw_server(trickle)
    environ = {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{server.port}/msi/token",
        "IDENTITY_HEADER": "h-secret",
    }
    credential = face.credential(_environ=environ, _deadline=1.5, read_timeout=5, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert header_lines[0] < 100  # the deadline ended the call, not the header limit


# ------------------------------------------------------------------------------------------- stalled attempts


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
    raw_server: Any,
    behaviour: Callable[[socket.socket, threading.Event], None],
) -> None:
    from ..conftest import FIGURES

    def stall(connection: socket.socket) -> None:
        read_request(connection)
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


def test_timeout_bounds_the_whole_call_including_retries(face: Any, raw_server: Any) -> None:

    def stall(connection: socket.socket) -> None:
        read_request(connection)
        _trickled_headers(connection, server.stopping)

    server = raw_server(stall)
    credential = face.credential(_environ=environ_for("app_service", server.port), timeout=0.3)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert server.connections == 1  # the first retry (1 s away) would cross the 0.3 s deadline
    assert face.sleeps == []
