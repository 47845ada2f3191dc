"""Hand-off from tests/transport (the lead folds it into this folder's test_credential.py): the credential's
own contract: ``timeout`` must be a positive number, the sync credential is usable after close(), and
pickling: a pickled credential works where it is unpickled (another interpreter too) and carries no secret or
token, and one with a caller's transport refuses to be pickled. The emulator."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential
from msi_credential.emulator import UserAssignedIdentity

from ..transport.support import SCOPE

# ---------------------------------------------------------------------------------------- arguments and close


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan")])
def test_timeout_must_be_a_positive_number(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        face.credential(timeout=value)


def test_sync_credential_is_usable_after_close(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    credential.get_token(SCOPE)
    credential.close()

    assert credential.get_token("https://vault.azure.net/.default").token


# --------------------------------------------------------------------------------------------------- pickling


def _set_environment(monkeypatch: Any, environ: dict[str, str]) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_pickled_credential_works_where_it_is_unpickled_and_carries_no_secret_or_token(
    emulator_factory: Any, monkeypatch: Any, face: str
) -> None:
    import asyncio

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    emulator = emulator_factory(
        "app_service", identities=[UserAssignedIdentity("client-a", "object-a", "/a")]
    )
    _set_environment(monkeypatch, emulator.environ)
    kind = ManagedIdentityCredential if face == "sync" else AsyncCredential
    credential = kind(client_id="client-a", share_cache=False, retry_total=2)
    if face == "sync":
        token = credential.get_token(SCOPE).token
    else:
        token = asyncio.run(credential.get_token(SCOPE)).token

    data = pickle.dumps(credential)
    copy = pickle.loads(data)

    assert emulator.secret.encode() not in data
    assert token.encode() not in data
    assert b"Lock" not in data and b"socket" not in data
    assert type(copy) is kind
    assert copy.source == credential.source
    if face == "sync":
        assert copy.get_token(SCOPE).token  # its own cache: a request of its own
    else:
        assert asyncio.run(copy.get_token(SCOPE)).token
    assert len(emulator.requests) == 2
    assert emulator.requests[-1].query["client_id"] == "client-a"


def test_a_pickled_credential_gets_a_token_in_a_new_interpreter(
    emulator_factory: Any, monkeypatch: Any
) -> None:
    emulator = emulator_factory("app_service")
    _set_environment(monkeypatch, emulator.environ)
    data = pickle.dumps(ManagedIdentityCredential(retry_total=0))
    environment = {
        name: value
        for name, value in os.environ.items()
        if "proxy" not in name.lower() and name != "PYTHONPATH"
    }
    environment.update(emulator.environ, NO_PROXY="*", PYTHONPATH=os.getcwd())
    program = (
        "import pickle, sys\n"
        "credential = pickle.loads(sys.stdin.buffer.read())\n"
        "token = credential.get_token('https://storage.azure.com/.default')\n"
        "print(credential.source.value, bool(token.token))\n"
    )

    finished = subprocess.run(
        [sys.executable, "-c", program],
        input=data,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr.decode()
    assert finished.stdout.decode().split() == ["app_service", "True"]
    assert len(emulator.requests) == 1


def test_a_credential_with_a_transport_refuses_to_be_pickled(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    emulator = emulator_factory("app_service")
    credential = ManagedIdentityCredential(_environ=emulator.environ, transport=RequestsTransport())

    with pytest.raises(TypeError, match="transport"):
        pickle.dumps(credential)
