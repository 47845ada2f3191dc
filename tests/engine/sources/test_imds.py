"""IMDS (``_engine/sources/imds.py``; VMs, AKS, Container Instances): its spec's rule for a first contact, its rules
through the scripted driver (tests/engine/scripted.py, no sockets), then through the public credential on both faces
against the emulator; its reading of error answers (``read_error``) called directly; where nothing answers, the sync
credential over a transport that refuses every request (RefusingTransport, tests/faces/support.py, no socket); last,
its first contact on a real loopback network on both faces: a closed, silent (blackhole), slow-to-connect or mute
(raw server) address, and the emulator. Its request, with every source's: test_spec.py."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError

from msi_credential import (
    CredentialUnavailableError,
    ManagedIdentityCredential,
    ManagedIdentityError,
    ManagedIdentitySource,
)
from msi_credential._engine.effects import Response, TransportFailure
from msi_credential._engine.response import error_from_response
from msi_credential._engine.sources import SPECS
from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import Fault, UserAssignedIdentity, decode_jwt

from ...chain_fallback import AsyncFallbackCredential, FallbackCredential
from ...faces.support import STORAGE, RefusingTransport
from ...skips import skip_or_fail_in_ci
from ...transport import support
from ...transport.support import accepted, read_request
from ..scripted import (
    APP_SERVICE,
    IMDS,
    Clock,
    Script,
    answer,
    engine,
    error_fields,
    error_for,
    error_response,
    is_failed,
    token_response,
)
from ..test_response import IMDS_BODY
from .support import RESOURCE, failure

# -------------------------------------------------------------------------------------------- the spec


def test_imds_first_contact_fails_fast_except_through_pod_identity() -> None:
    from msi_credential._engine.detection import SourceConfig

    absence = SPECS[S.IMDS].absence
    assert absence is not None
    assert (absence.code, absence.first_connect_timeout) == ("imds_unreachable", 1.0)
    assert absence.fails_fast(SourceConfig(S.IMDS, "http://127.0.0.1:1/t"))
    assert not absence.fails_fast(SourceConfig(S.IMDS, "http://127.0.0.1:1/t", pod_identity=True))


# ------------------------------------------------------------------------ the engine's rules, scripted


def test_imds_gone_is_retried_on_the_ten_second_schedule() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(410), error_response(410), token_response("imds"))

    assert script.run(engine(IMDS, clock).acquire(RESOURCE)).token == "imds"
    assert script.sleeps == [10.0, 10.0]


def test_imds_retries_a_404_that_other_sources_raise() -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(404), token_response("imds"), error_response(404))

    assert script.run(engine(IMDS, clock).acquire(RESOURCE)).token == "imds"
    assert script.sleeps == [1.0]
    assert failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE)).status_code == 404
    assert script.sleeps == [1.0]


def test_imds_keeps_the_connection_timeout_keyword_after_its_first_answer(imds_on_loopback: None) -> None:
    clock = Clock()
    script = Script(clock).queue(error_response(503), token_response("imds"))

    script.run(engine({}, clock, connection_timeout=0.5).acquire(RESOURCE))

    assert [request.connect_timeout for request in script.sent] == [0.5, 0.5]


def test_imds_that_answered_once_retries_a_later_connection_failure(imds_on_loopback: None) -> None:
    clock = Clock()
    script = Script(clock).queue(
        error_response(503), TransportFailure("connect", "refused"), token_response("imds")
    )

    assert script.run(engine({}, clock).acquire(RESOURCE)).token == "imds"
    assert script.sleeps == [1.0, 2.0]


def test_the_first_imds_contact_failure_names_the_endpoint_and_the_failure(imds_on_loopback: None) -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect_timeout", "timed out"))

    error = failure(script, engine({}, clock).acquire(RESOURCE, in_chain=True))

    assert isinstance(error, CredentialUnavailableError) and error.error_code == "imds_unreachable"
    assert str(error).startswith(
        "IMDS did not answer at http://127.0.0.1:9/metadata/identity/oauth2/token (timed out); "
        "managed identity is not available here"
    )
    assert len(script.sent) == 1


def test_a_pod_identity_imds_that_never_answers_is_unavailable_naming_its_variable() -> None:
    clock = Clock()
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, engine(IMDS, clock, retry_total=0).acquire(RESOURCE))

    assert isinstance(error, CredentialUnavailableError) and error.error_code == "imds_unreachable"
    assert str(error).startswith(
        "IMDS at AZURE_POD_IDENTITY_AUTHORITY_HOST (http://127.0.0.1:9/metadata/identity/oauth2/token) "
        "did not answer after 1 attempt(s): refused"
    )


# -------------------------------------------- through the credential, both faces, against the emulator


IDENTITY = UserAssignedIdentity(
    client_id="11111111-1111-1111-1111-111111111111",
    object_id="22222222-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
)


def test_imds_token_is_issued_by_sts_and_lives_about_an_hour(face: Any, emulator_factory: Any) -> None:
    # The request itself: test_spec.py::test_source_returns_a_token_for_the_audience_and_sends_its_exact_request
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    token = credential.get_token(STORAGE)

    claims = decode_jwt(token.token)
    assert claims["iss"].startswith("https://sts.windows.net/")
    assert token.expires_on > time.time() + 3000


def test_imds_identity_config_spelling_is_accepted(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", identities=[IDENTITY])
    credential = face.credential(emulator, identity_config={"object_id": IDENTITY.object_id})

    credential.get_token(STORAGE)

    assert emulator.requests[0].query["object_id"] == IDENTITY.object_id


@pytest.mark.parametrize(
    ("faults", "scope", "code", "unavailable", "sleeps"),
    [
        pytest.param(
            [
                Fault(
                    400,
                    {"error": "invalid_resource", "error_description": "AADSTS500011: resource not found"},
                )
            ],
            "https://nope.example/.default",
            "invalid_resource",
            False,
            [],
            id="invalid_resource-fails",
        ),
        pytest.param(
            [
                Fault(404, "<html>not here</html>", {"Content-Type": "text/html"}),
                *[Fault(404, "<html/>")] * 3,
            ],
            STORAGE,
            "imds_unreachable",
            True,
            [1.0, 2.0, 4.0],
            id="non_json-means-not-imds",
        ),
        pytest.param(
            [Fault(403, {"error": "forbidden", "error_description": "no"})],
            STORAGE,
            "forbidden",
            False,
            [],
            id="bad_request-is-not-retried",
        ),
    ],
)
def test_imds_error_answer_fails_or_means_no_imds(
    face: Any,
    emulator_factory: Any,
    faults: list[Fault],
    scope: str,
    code: str,
    unavailable: bool,
    sleeps: list[float],
) -> None:
    emulator = emulator_factory("imds")
    emulator.script(*faults)
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(scope)

    assert caught.value.error_code == code
    assert isinstance(caught.value, CredentialUnavailableError) is unavailable
    assert len(emulator.requests) == len(sleeps) + 1  # retried (404 is, for IMDS), or not
    assert face.sleeps == sleeps


def test_imds_unreachable_is_unavailable_at_once(face: Any, unused_port: int) -> None:
    credential = face.credential(
        _environ={"AZURE_POD_IDENTITY_AUTHORITY_HOST": f"http://127.0.0.1:{unused_port}"}, retry_total=0
    )

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"


@pytest.mark.parametrize("supplied", [False, True], ids=["own_transport", "supplied_requests_transport"])
def test_imds_redirect_at_first_contact_is_an_unexpected_redirect(
    face: Any, emulator_factory: Any, supplied: bool
) -> None:
    """A 3xx with a JSON body is IMDS refusing by redirect, on both faces. requests reads a redirect's body before
    handing the response back (a plain session does, even with redirects off): the body must not look empty."""
    emulator = emulator_factory("imds")
    emulator.script(Fault(301, {"error": "moved"}, {"Location": "http://127.0.0.1:9/steal"}))
    kwargs: dict[str, Any] = {}
    if supplied:
        from azure.core.pipeline.transport import AsyncioRequestsTransport, RequestsTransport

        kwargs["transport"] = AsyncioRequestsTransport() if face.is_async else RequestsTransport()
    credential = face.credential(emulator, **kwargs)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "unexpected_redirect"
    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.status_code == 301
    assert len(emulator.requests) == 1


def test_imds_gone_is_retried_seven_times_ten_seconds_apart(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(*[Fault(410)] * 7)
    credential = face.credential(emulator)

    credential.get_token(STORAGE)

    assert len(emulator.requests) == 8
    assert face.sleeps == [10.0] * 7


def test_imds_claims_bypass_the_cache(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    first = credential.get_token(STORAGE)
    second = credential.get_token(STORAGE, claims='{"access_token":{"nbf":{"essential":true}}}')
    third = credential.get_token(STORAGE)

    assert emulator.tokens_issued == 2
    assert first.token != second.token
    assert third.token == second.token
    assert "claims" not in emulator.requests[1].query


# ------------------------------------------------------------------------- read_error, called directly
# IMDS's own reading of error answers (``sources/imds.py``): 403 "unreachable", 400 invalid resource or no such
# identity.


@pytest.mark.parametrize(
    "body",
    [
        {
            "error": "forbidden",
            "error_description": "A socket operation was attempted to an unreachable network",
        },
        {"message": "Network UNREACHABLE"},
    ],
)
def test_imds_403_containing_unreachable_is_unavailable(body: dict[str, Any]) -> None:
    error = error_from_response(answer(403, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "imds_unreachable"


def test_imds_403_plain_text_unreachable_docker_desktop_is_unavailable() -> None:
    body = b"connecting to 169.254.169.254:80: dial tcp: A socket operation was attempted to an unreachable network."
    error = error_from_response(answer(403, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "imds_unreachable"


def test_imds_other_403_is_failed() -> None:
    error = error_from_response(
        answer(403, {"error": "forbidden", "error_description": "nope"}), source=S.IMDS
    )
    assert is_failed(error)
    assert error.error_code == "forbidden"


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_resource", "error_description": "bad resource"},
        {
            "error": "invalid_request",
            "error_description": "AADSTS500011: The resource principal was not found",
        },
        {"error": "invalid_request", "error_description": "AADSTS50001: The application was not found"},
    ],
)
def test_imds_400_invalid_resource_is_failed_invalid_resource(body: dict[str, Any]) -> None:
    error = error_from_response(answer(400, body), source=S.IMDS)
    assert is_failed(error)
    assert error.error_code == "invalid_resource"
    assert error.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        IMDS_BODY,
        {"error": "invalid_request", "error_description": "Multiple user assigned identities exist"},
        {},
    ],
)
def test_imds_other_400_is_unavailable_identity_not_found(body: dict[str, Any]) -> None:
    error = error_from_response(answer(400, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "identity_not_found"


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (404, {"error": "not_found"}, "not_found"),
        (500, {"error": "internal_error", "error_description": "boom"}, "internal_error"),
        (429, {}, "http_429"),
        (401, {"error": "unauthorized"}, "unauthorized"),
    ],
)
def test_imds_other_json_errors_are_failed(status: int, body: dict[str, Any], code: str) -> None:
    error = error_from_response(answer(status, body), source=S.IMDS)
    assert is_failed(error)
    assert error.error_code == code


def test_imds_unreachable_403_says_imds_is_unreachable_from_this_host() -> None:
    error = error_for(403, b'{"error_description": "Destination unreachable"}', S.IMDS)
    assert error.error_code == "imds_unreachable"
    assert error.message == "IMDS is unreachable from this host (HTTP 403): Destination unreachable"


def test_imds_400_whose_server_code_is_an_unknown_resource_is_invalid_resource() -> None:
    # the AADSTS code may come as the error code alone, with a description that does not repeat it
    error = error_for(400, b'{"error": "AADSTS500011", "error_description": "no such app"}', S.IMDS)
    assert error.error_code == "invalid_resource"
    assert error.message == "IMDS refused the resource (HTTP 400, AADSTS500011): no such app"


def test_imds_400_without_a_server_code_is_identity_not_found_not_a_resource_problem() -> None:
    error = error_for(400, b'{"error_description": "None of the identities match"}', S.IMDS)
    assert error.error_code == "identity_not_found"


def test_imds_400_for_an_unknown_identity_says_so() -> None:
    body = b'{"error": "invalid_request", "error_description": "Identity not found"}'
    error = error_from_response(Response(400, {}, body), source=S.IMDS)

    assert error_fields(error) == (
        True,
        "identity_not_found",
        400,
        S.IMDS,
        "IMDS has no such identity assigned (identity not found) (HTTP 400, invalid_request): Identity not found",
    )


# --------------------------------- nothing answers at the IMDS address: the sync credential, no socket
# Inside a credential chain and on its own; the network is a transport that refuses every request.


def test_not_on_azure_in_a_credential_chain_is_unavailable_without_retries(in_credential_chain: None) -> None:
    transport = RefusingTransport()
    credential = ManagedIdentityCredential(_environ={}, transport=transport, _sleep=lambda s: None)
    assert credential.source is ManagedIdentitySource.IMDS

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert isinstance(caught.value, ClientAuthenticationError)
    [(request, options)] = transport.requests
    assert request.url.startswith("http://169.254.169.254/metadata/identity/oauth2/token?")
    assert options["connection_timeout"] == 1.0


def test_not_on_azure_on_its_own_is_unavailable_after_the_normal_timeouts_and_retries() -> None:
    sleeps: list[float] = []
    transport = RefusingTransport()
    credential = ManagedIdentityCredential(_environ={}, transport=transport, _sleep=sleeps.append)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert [options["connection_timeout"] for _, options in transport.requests] == [2.0] * 4
    assert sleeps == [1.0, 2.0, 4.0]


# ---------------------------------------------- on a loopback network, both faces: fail fast off Azure
# IMDS's rules as the credential meets them on a real loopback network: off Azure, inside a credential chain, its
# first contact fails fast as unavailable (a silent, closed, slow or mute address); on its own, or once it has
# answered, it is retried.

raw_server = support.raw_server  # the fixture


def _unavailable_at_once(face: Any, monkeypatch: Any, port: int, **options: Any) -> None:
    """IMDS's address pointed at loopback ``port``: a credential without variables (``options``, its keywords) is
    unavailable at its first call, ``imds_unreachable``, without a retry (no sleep)."""
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", f"http://127.0.0.1:{port}")
    credential = face.credential(_environ={}, **options)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert face.sleeps == []


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
    (the next credential in the chain, a FallbackCredential of tests/chain_fallback.py)."""
    if face.is_async:
        from azure.identity.aio import ChainedTokenCredential as AsyncChain

        token: AccessToken = face._run(AsyncChain(credential.inner, fallback).get_token(STORAGE))
        return token
    from azure.identity import ChainedTokenCredential

    return ChainedTokenCredential(credential.inner, fallback).get_token(STORAGE)


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

    assert credential.get_token(STORAGE).token == SlowAcceptServer.TOKEN
    assert slow_first_connect_imds.saw_a_waiting_client
    assert slow_first_connect_imds.connections == 1
    assert face.sleeps == sleeps


def test_imds_in_an_azure_identity_chain_fails_fast_on_a_slow_first_connect_and_the_chain_moves_on(
    face: Any, slow_first_connect_imds: SlowAcceptServer
) -> None:
    """Inside ChainedTokenCredential (DefaultAzureCredential is one) the first contact fails at once as unavailable
    (the default 1 s connect timeout, here 0.5 s to keep clear of the SYN retransmit): the next credential answers."""
    fallback = AsyncFallbackCredential() if face.is_async else FallbackCredential()
    credential = face.credential(_environ={}, connection_timeout=0.5)

    token = chain_get_token(face, credential, fallback)

    assert token.token == FallbackCredential.TOKEN and fallback.calls == 1
    assert slow_first_connect_imds.connections == 0
    assert face.sleeps == []


def test_imds_chosen_by_azure_token_credentials_gets_its_token_through_a_slow_first_connect_in_a_chain(
    face: Any, slow_first_connect_imds: SlowAcceptServer
) -> None:
    fallback = AsyncFallbackCredential() if face.is_async else FallbackCredential()
    environ = {"AZURE_TOKEN_CREDENTIALS": "ManagedIdentityCredential"}
    credential = face.credential(_environ=environ, connection_timeout=0.5)

    token = chain_get_token(face, credential, fallback)

    assert token.token == SlowAcceptServer.TOKEN and fallback.calls == 0
    assert face.sleeps == [1.0]


def test_silent_imds_address_in_a_chain_is_unavailable_after_one_connect_attempt(
    face: Any, blackhole_port: int, monkeypatch: Any, in_credential_chain: None
) -> None:
    """The first contact's 1 s connect timeout itself is checked without a network in tests/engine/test_flow.py."""
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

    assert credential.get_token(STORAGE).token
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
    credential.get_token(STORAGE)
    emulator.script(Fault(reset=True), Fault(503))

    assert credential.get_token("https://vault.azure.net/.default").token
    assert face.sleeps == [1.0, 2.0]


# --------------------------------------------- on a loopback network, both faces: answers and requests
# Its 400 "identity not found" is read exactly; it takes no client capabilities.


def test_similar_aadsts_codes_are_not_read_as_invalid_resource(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(400, {"error": "invalid_request", "error_description": "AADSTS500012: something else"})
    )
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "identity_not_found"


def test_capabilities_are_not_sent_where_the_source_does_not_take_them(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator, client_capabilities=["cp1"])

    credential.get_token(STORAGE)
    credential.get_token(STORAGE, claims='{"access_token":{}}')

    assert all(
        "xms_cc" not in r.query and "token_sha256_to_refresh" not in r.query for r in emulator.requests
    )
