"""Hand-off from tests/transport (the lead folds it into this folder's test_imds.py): IMDS's rules as the
credential meets them on a real loopback network: off Azure, inside a credential chain, its first contact
fails fast as unavailable (a silent, closed, slow or mute address); on its own, or once it has answered, it is
retried; its 400 "identity not found" is read exactly; it takes no client capabilities. Both faces (the
``face`` fixture)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from azure.core.credentials import AccessToken

from msi_credential import CredentialUnavailableError
from msi_credential.emulator import Fault

from ...e2e.test_chain_interop import AsyncFixedCredential, FixedCredential
from ...skips import skip_or_fail_in_ci
from ...transport import support
from ...transport.support import (
    SCOPE,
    accepted,
    read_request,
)

raw_server = support.raw_server  # the fixture


def _unavailable_at_once(face: Any, monkeypatch: Any, port: int, **options: Any) -> None:
    """IMDS's address pointed at loopback ``port``: a credential without variables (``options``, its keywords) is
    unavailable at its first call, ``imds_unreachable``, without a retry (no sleep)."""
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{port}")
    credential = face.credential(_environ={}, **options)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "imds_unreachable"
    assert face.sleeps == []


# ---------------------------------------------------------------------------------------- fail fast off Azure


def test_nothing_listening_at_imds_in_a_chain_is_unavailable_on_the_first_failure_without_a_retry(
    face: Any, unused_port: int, monkeypatch: Any, in_credential_chain: None
) -> None:
    """No variables, IMDS address closed, inside a credential chain: unavailable on the first failure, no retry,
    no sleep."""
    _unavailable_at_once(face, monkeypatch, unused_port)


@pytest.fixture
def blackhole_port() -> Iterator[int]:
    """A loopback port whose SYNs are dropped (listen backlog full), as an absent IMDS address behaves."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue; later connects get no SYN-ACK
        filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)
    yield port
    for filler in fillers:
        filler.close()
    listener.close()


class SlowAcceptServer:
    """A loopback IMDS whose first connect is slow the way a busy host's is: it listens with a backlog of 0 and
    the one place of its accept queue is taken by a connection it has not accepted, so the kernel drops a client's
    SYN. Once a client is seen waiting (its socket in SYN_SENT, read from /proc/net/tcp), the server accepts that
    filler: the client's connect completes when its kernel retransmits the SYN, about 1 s after the first, or at
    once on a new attempt. Every connection after the filler gets a token answer."""

    TOKEN = "slow-first-connect-token"

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.saw_a_waiting_client = False
        self.connections = 0  # served, the filler not counted
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _client_waiting(self) -> bool:
        """A socket in SYN_SENT (state 02) towards this port: its SYN was dropped, the queue being full."""
        with open("/proc/net/tcp", encoding="ascii") as table:
            rows = [line.split() for line in table.readlines()[1:]]
        return any(row[2].endswith(f":{self.port:04X}") and row[3] == "02" for row in rows)

    def _serve(self) -> None:
        while not self._stop.is_set() and not self._client_waiting():
            self._stop.wait(0.002)
        self.saw_a_waiting_client = not self._stop.is_set()
        self._listener.settimeout(0.2)
        with contextlib.suppress(OSError):
            self._listener.accept()[
                0
            ].close()  # the filler: now there is room for the client's retransmitted SYN
        for connection in accepted(self._listener, self._stop):
            with connection, contextlib.suppress(OSError):
                read_request(connection)
                self.connections += 1
                body = json.dumps({"access_token": self.TOKEN, "expires_in": "3600", "token_type": "Bearer"})
                connection.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                )

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._filler.close()
        self._listener.close()


@pytest.fixture
def slow_first_connect_imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowAcceptServer]:
    """IMDS's address pointed at a SlowAcceptServer (Linux: it reads /proc/net/tcp to see a client wait)."""
    from msi_credential._engine import detection

    if not Path("/proc/net/tcp").exists():
        skip_or_fail_in_ci("no /proc/net/tcp: cannot see a client's dropped SYN on this kernel")
    server = SlowAcceptServer()
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{server.port}")
    yield server
    server.stop()


def chain_get_token(face: Any, credential: Any, fallback: Any) -> AccessToken:
    """get_token through azure-identity's ChainedTokenCredential of the face's kind: ours first, then ``fallback``
    (the next credential in the chain, a FixedCredential of the chain's end-to-end tests)."""
    if face.is_async:
        from azure.identity.aio import ChainedTokenCredential as AsyncChain

        token: AccessToken = face._run(AsyncChain(credential.inner, fallback).get_token(SCOPE))
        return token
    from azure.identity import ChainedTokenCredential

    return ChainedTokenCredential(credential.inner, fallback).get_token(SCOPE)


@pytest.mark.parametrize(
    ("timeout", "sleeps"),
    [(None, []), (0.5, [1.0])],
    ids=["connect-completes-on-the-syn-retransmit", "connect-times-out-and-is-retried"],
)
def test_imds_on_its_own_gets_its_token_through_a_slow_first_connect(
    face: Any, slow_first_connect_imds: SlowAcceptServer, timeout: Optional[float], sleeps: list[float]
) -> None:
    """azure-identity's credential on its own does not probe either: the normal 2 s connect timeout and retries."""
    options = {} if timeout is None else {"connection_timeout": timeout}
    credential = face.credential(_environ={}, **options)

    assert credential.get_token(SCOPE).token == SlowAcceptServer.TOKEN
    assert slow_first_connect_imds.saw_a_waiting_client
    assert slow_first_connect_imds.connections == 1
    assert face.sleeps == sleeps


def test_imds_in_an_azure_identity_chain_fails_fast_on_a_slow_first_connect_and_the_chain_moves_on(
    face: Any, slow_first_connect_imds: SlowAcceptServer
) -> None:
    """Inside ChainedTokenCredential (DefaultAzureCredential is one) the first contact fails at once as unavailable
    (the default 1 s connect timeout, here 0.5 s to keep clear of the SYN retransmit): the next credential answers."""
    fallback = AsyncFixedCredential() if face.is_async else FixedCredential()
    credential = face.credential(_environ={}, connection_timeout=0.5)

    token = chain_get_token(face, credential, fallback)

    assert token.token == FixedCredential.TOKEN and fallback.calls == 1
    assert slow_first_connect_imds.connections == 0
    assert face.sleeps == []


def test_imds_chosen_by_azure_token_credentials_gets_its_token_through_a_slow_first_connect_in_a_chain(
    face: Any, slow_first_connect_imds: SlowAcceptServer
) -> None:
    fallback = AsyncFixedCredential() if face.is_async else FixedCredential()
    environ = {"AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential"}
    credential = face.credential(_environ=environ, connection_timeout=0.5)

    token = chain_get_token(face, credential, fallback)

    assert token.token == SlowAcceptServer.TOKEN and fallback.calls == 0
    assert face.sleeps == [1.0]


def test_silent_imds_address_in_a_chain_is_unavailable_after_one_connect_attempt(
    face: Any, blackhole_port: int, monkeypatch: Any, in_credential_chain: None
) -> None:
    """The first contact's 1 s connect timeout itself is checked without a network in test_mutation_guards."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    probe.settimeout(0.3)
    try:
        probe.connect(("127.0.0.1", blackhole_port))
        # Linux (CI) drops SYNs beyond a full backlog; some kernels (e.g. macOS, WSL1) complete them.
        if not sys.platform.startswith("linux"):
            pytest.skip(f"{sys.platform} completes connects beyond the backlog; no blackhole to test with")
        skip_or_fail_in_ci(
            "this Linux kernel completes connects beyond the backlog; no blackhole to test with"
        )
    except OSError:
        pass
    finally:
        probe.close()
    _unavailable_at_once(face, monkeypatch, blackhole_port)


def test_slow_but_present_imds_still_works(face: Any, emulator_factory: Any, monkeypatch: Any) -> None:
    from msi_credential._engine import detection

    emulator = emulator_factory("imds")
    emulator.delay = 1.5  # longer than the first-contact connect timeout, within the read timeout
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", emulator.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
    credential = face.credential(_environ={})

    assert credential.get_token(SCOPE).token
    assert len(emulator.requests) == 1


def test_imds_address_that_accepts_and_never_answers_in_a_chain_is_unavailable_after_the_read_timeout(
    face: Any,
    raw_server: Any,
    monkeypatch: Any,
    in_credential_chain: None,
) -> None:
    """Accepting and staying silent looks like a slow IMDS until the read timeout (10 s by default, here 0.5 s):
    then, inside a chain, it is unavailable at once, with no retry, as on any first contact there."""
    server = raw_server(lambda connection: (read_request(connection), server.stopping.wait(30)))
    _unavailable_at_once(face, monkeypatch, server.port, read_timeout=0.5)

    assert server.connections == 1


def test_imds_that_answered_once_is_retried_after(face: Any, emulator_factory: Any, monkeypatch: Any) -> None:
    from msi_credential._engine import detection

    emulator = emulator_factory("imds")
    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", emulator.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"])
    credential = face.credential(_environ={})
    credential.get_token(SCOPE)
    emulator.script(Fault(reset=True), Fault(503))

    assert credential.get_token("https://vault.azure.net/.default").token
    assert face.sleeps == [1.0, 2.0]


# --------------------------------------------------------------------------------------- answers and requests


def test_similar_aadsts_codes_are_not_read_as_invalid_resource(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(400, {"error": "invalid_request", "error_description": "AADSTS500012: something else"})
    )
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "identity_not_found"


def test_capabilities_are_not_sent_where_the_source_does_not_take_them(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator, client_capabilities=["cp1"])

    credential.get_token(SCOPE)
    credential.get_token(SCOPE, claims='{"access_token":{}}')

    assert all(
        "xms_cc" not in r.query and "token_sha256_to_refresh" not in r.query for r in emulator.requests
    )
