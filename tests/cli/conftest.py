"""Fixtures and helpers of the command's tests: ``main(argv)`` with its output captured, the environment a
subprocess gets, an App Service emulator the environment points at, and a guard against any connection."""

from __future__ import annotations

import io
import os
import socket
from typing import Any

import pytest

from msi_credential.cli import main
from msi_credential.emulator import Emulator, UserAssignedIdentity

from ..conftest import MANAGED_IDENTITY_VARIABLES

STORAGE = "https://storage.azure.com/.default"
STORAGE_RESOURCE = "https://storage.azure.com"
VAULT = "https://vault.azure.net"
IDENTITY = UserAssignedIdentity(
    client_id="aaaaaaaa-1111-1111-1111-111111111111",
    object_id="bbbbbbbb-2222-2222-2222-222222222222",
    resource_id="/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/g/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/a",
)
SUBPROCESS_TIMEOUT = 60.0
LINE_TIMEOUT = 30.0


def run(argv: list[str]) -> tuple[int, str]:
    """``main(argv)`` with its output in a buffer: (exit code, stdout)."""
    buffer = io.StringIO()
    code = main(argv, stdout=buffer)
    return code, buffer.getvalue()


def run_refused(argv: list[str], code: int, capsys: pytest.CaptureFixture[str]) -> str:
    """``main(argv)`` that must exit with ``code`` and print nothing on stdout: what it wrote on stderr."""
    exit_code, out = run(argv)
    assert exit_code == code
    assert out == ""
    return capsys.readouterr().err


def run_exit(argv: list[str]) -> int:
    """``main(argv)`` for arguments argparse handles itself (help, errors): the SystemExit code."""
    with pytest.raises(SystemExit) as raised:
        main(argv, stdout=io.StringIO())
    code = raised.value.code
    assert isinstance(code, int)
    return code


def flat(text: str) -> str:
    """Whitespace collapsed, so argparse's line wrapping does not matter."""
    return " ".join(text.split())


def point_at(monkeypatch: pytest.MonkeyPatch, emulator: Emulator) -> None:
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)


def clean_environment() -> dict[str, str]:
    """The environment of a command run as a subprocess: no managed identity variables, no proxy (NO_PROXY=*), no
    CA bundle of the developer's, and no PYTHONUNBUFFERED (the command must flush its export lines itself)."""
    drop = {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "PYTHONUNBUFFERED",
    }
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in MANAGED_IDENTITY_VARIABLES and name.upper() not in drop
    }
    env["NO_PROXY"] = env["no_proxy"] = "*"
    return env


@pytest.fixture
def no_connections(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Fail the test for any outgoing connection at all, loopback included."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise AssertionError(f"unexpected connection: {args!r}")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    return attempts


@pytest.fixture
def app_service(emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """An App Service emulator, with IDENTITY assigned, that the environment points at."""
    emulator: Emulator = emulator_factory("app_service", identities=[IDENTITY])
    point_at(monkeypatch, emulator)
    return emulator
