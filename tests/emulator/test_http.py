"""msi_credential/emulator/_http.py: the server under what clients send it, failed handshakes, malformed and
oversized requests, repeated parameters, a reset instead of an answer, and its request log."""

from __future__ import annotations

import contextlib
import http.client
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import pytest

from msi_credential.emulator import Fault

from .http_calls import call, token_request


def test_failed_handshake_does_not_break_the_server(emulator_factory: Any, tls_cert: tuple[str, str]) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    parts = urlsplit(emulator.url)

    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP to a TLS port
    with socket.create_connection((parts.hostname or "", parts.port or 0), timeout=5):
        pass  # hang up before the handshake

    assert token_request(emulator).status == 200
    assert len(emulator.requests) == 1


def test_malformed_requests_do_not_crash_the_server(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    parts = urlsplit(emulator.url)
    address = (parts.hostname or "", parts.port or 0)

    for garbage in (
        b"\x00\xff nonsense\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ):
        with socket.create_connection(address, timeout=5) as raw:
            raw.sendall(garbage)
            raw.settimeout(2)
            with contextlib.suppress(OSError):
                raw.recv(4096)
    with socket.create_connection(address, timeout=5) as raw:  # headers only: refused before any body byte
        raw.sendall(b"POST /metadata/identity/oauth2/token HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n")
        too_large = raw.recv(4096)

    assert too_large.startswith(b"HTTP/1.1 413 ")
    assert token_request(emulator).status == 200


def test_repeated_query_parameter_is_a_bad_request(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")

    answer = call(
        emulator,
        path="/metadata/identity/oauth2/token?api-version=2018-02-01&resource=a&resource=b",
        headers={"Metadata": "true"},
    )

    assert answer.status == 400


def test_reset_fault_closes_without_answering(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(reset=True))

    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        token_request(emulator)

    assert token_request(emulator).status == 200
    assert len(emulator.requests) == 2


def test_logs_carry_no_secret_or_token(emulator_factory: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="msi_credential.emulator")
    emulator = emulator_factory("app_service")

    token = token_request(emulator).json()["access_token"]

    messages = [record.getMessage() for record in caplog.records]
    assert any("/msi/token" in message and "200" in message for message in messages)
    assert not any(emulator.secret in message or token in message for message in messages)
