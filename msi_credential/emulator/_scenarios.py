"""Incident scenarios: the failures people hit with managed identity in production, replayed by the emulator.

Each scenario is named once here (``SCENARIOS``) and listed with the incident it reproduces in docs/testing.md. A
scenario decides, per request, whether the endpoint answers as usual or with the incident's answer; it composes with
scripted faults (which go first), random faults and the emulator's latency. Durations are read on the emulator's
clock (``Emulator(clock=...)``), so a test can drive them without waiting.
"""

from __future__ import annotations

import threading
import uuid
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from msi_credential._source import ManagedIdentitySource

from ._tokens import decode_jwt, mint_jwt
from ._wire import RecordedRequest, path_matches, write_atomically

if TYPE_CHECKING:
    from ._http import Server
    from ._server import Emulator, Fault

__all__ = ["SCENARIOS", "Scenario", "scenario"]

_IMDS = ManagedIdentitySource.IMDS
_POLL = 0.01  # seconds between two looks at the clock while an endpoint is still starting

# What Docker Desktop's proxy answers for 169.254.169.254 when no IMDS is behind it (the status line and body of
# https://github.com/Azure/azure-sdk-for-python/issues/31759).
DOCKER_DESKTOP_UNREACHABLE = (
    "connecting to 169.254.169.254:80: connecting to 169.254.169.254:80: dial tcp 169.254.169.254:80: connectex: "
    "A socket operation was attempted to an unreachable network."
)
# IMDS's answer to a request without a selector on a VM with no system-assigned identity and several user-assigned.
MULTIPLE_IDENTITIES = (
    "Multiple user assigned identities exist, please specify the clientId / resourceId of the identity in the token "
    "request"
)


class Scenario:
    """One incident. Subclasses set ``name``, ``sources`` (empty: any) and ``default_source``, and override
    ``answer`` (per request), ``attach`` (once serving) or ``listening`` (whether the port accepts connections)."""

    name: ClassVar[str]
    summary: ClassVar[str]
    sources: ClassVar[tuple[ManagedIdentitySource, ...]] = ()
    default_source: ClassVar[ManagedIdentitySource] = _IMDS

    def __init__(self) -> None:
        self.emulator: Optional[Emulator] = None
        self.started_at = 0.0
        self.token_requests = 0  # token requests seen (answered by the scenario or not)
        self.answered = 0  # requests the scenario answered itself

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def check_source(self, source: ManagedIdentitySource) -> None:
        if self.sources and source not in self.sources:
            names = ", ".join(item.value for item in self.sources)
            raise ValueError(f"scenario {self.name!r} is an incident of {names}, not of {source.value}")

    # ------------------------------------------------------------------ called by the emulator

    def attach(self, emulator: Emulator) -> None:
        """Called by ``Emulator.start()`` once its files are written, before it serves."""
        self.emulator = emulator
        self.started_at = emulator._clock()
        self.token_requests = self.answered = 0

    def fault(self, request: RecordedRequest) -> Fault | None:
        """The answer to ``request`` (called under the emulator's lock); None: answer as usual."""
        emulator = self.emulator
        if emulator is None or not path_matches(emulator._path, request.path):
            return None
        self.token_requests += 1
        answer = self.answer(request, emulator._clock() - self.started_at)
        if answer is not None:
            self.answered += 1
        return answer

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        return None

    def listening(self, elapsed: float) -> bool:
        """Whether the endpoint accepts connections ``elapsed`` seconds after start (a refused connection is the
        kernel's answer: nothing listens yet)."""
        return True

    # ------------------------------------------------------------------ serving

    def serve(self, server: Server, stopping: threading.Event, poll_interval: float) -> None:
        """The emulator's serving thread: refuse connections (bound, not listening) until ``listening``, then
        serve. ``poll()`` from another thread starts listening at once when it is due."""
        while not stopping.is_set() and not self.poll(server):
            stopping.wait(_POLL)
        server.serve_forever(poll_interval=poll_interval)

    def poll(self, server: Optional[Server] = None) -> bool:
        """Start listening if it is due now (on the emulator's clock); whether the endpoint listens. A test that
        advances a manual clock calls this to make the change take effect before its client's next attempt."""
        emulator = self.emulator
        if emulator is None:
            return False
        server = server if server is not None else emulator._server
        if server is None:
            return False
        return server.listen_when(lambda: self.listening(emulator._clock() - self.started_at))


def _fault(
    status: int, body: Any = None, headers: Optional[dict[str, str]] = None, delay: float = 0.0
) -> Fault:
    from ._server import Fault

    return Fault(status, body=body, headers=headers, delay=delay)


def _positive(name: str, value: float, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise TypeError(f"{name} must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'0 or more' if allow_zero else 'more than 0'}")
    return float(value)


class DockerDesktopImds(Scenario):
    name = "docker_desktop_imds"
    summary = "Docker Desktop's proxy answers IMDS requests 403 with an 'unreachable network' text"
    sources = (_IMDS,)

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        return _fault(
            403, DOCKER_DESKTOP_UNREACHABLE + "\n", {"Connection": "close", "Content-Type": "text/plain"}
        )


class IdentityNotYetAssigned(Scenario):
    """The identity was just assigned: the endpoint answers "identity not found" for the first ``requests`` token
    requests, or, with ``seconds``, until that long after start."""

    name = "identity_not_yet_assigned"
    summary = "a freshly assigned identity is 'not found' for a while"

    def __init__(self, requests: int = 2, seconds: Optional[float] = None) -> None:
        super().__init__()
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 0:
            raise ValueError("requests must be an int, 0 or more")
        self.requests = requests
        self.seconds = None if seconds is None else _positive("seconds", seconds)

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        pending = elapsed < self.seconds if self.seconds is not None else self.token_requests <= self.requests
        if not pending:
            return None
        assert self.emulator is not None
        reply = self.emulator._endpoint.errors.not_found()
        return _fault(reply.status, reply.body, dict(reply.headers))


class ImdsThrottling(Scenario):
    """429 with ``Retry-After: retry_after`` for the first ``requests`` token requests, then tokens."""

    name = "imds_throttling"
    summary = "IMDS throttles: 429 Too Many Requests with Retry-After"

    def __init__(self, requests: int = 2, retry_after: int = 1) -> None:
        super().__init__()
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 0:
            raise ValueError("requests must be an int, 0 or more")
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise ValueError("retry_after must be an int of seconds, 0 or more")
        self.requests = requests
        self.retry_after = retry_after

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        if self.token_requests > self.requests:
            return None
        return _fault(429, headers={"Retry-After": str(self.retry_after)})


class ContainerAppsStarting(Scenario):
    """Connections are refused (nothing listens on the port yet) for ``seconds`` after start, then it serves."""

    name = "container_apps_starting"
    summary = "Container Apps' identity endpoint refuses connections while the replica starts"
    default_source = ManagedIdentitySource.APP_SERVICE

    def __init__(self, seconds: float = 5.0) -> None:
        super().__init__()
        self.seconds = _positive("seconds", seconds, allow_zero=True)

    def listening(self, elapsed: float) -> bool:
        return elapsed >= self.seconds


class SingleUserAssigned(Scenario):
    """A VM with no system-assigned identity: IMDS answers a request without a selector with the token of its only
    user-assigned identity (with several: 400, "Multiple user assigned identities exist")."""

    name = "single_user_assigned"
    summary = (
        "a VM with one user-assigned identity answers a system-assigned request with that identity's token"
    )
    sources = (_IMDS,)

    def attach(self, emulator: Emulator) -> None:
        if not emulator.identities:
            from ._wire import UserAssignedIdentity

            emulator.identities.append(UserAssignedIdentity(str(uuid.uuid4()), str(uuid.uuid4()), ""))
        if len(emulator.identities) == 1:
            emulator.system_identity = emulator.identities[0]  # the only identity the VM has
        super().attach(emulator)

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        assert self.emulator is not None
        selected = any(name in request.query for name in self.emulator._endpoint.expects.wire_selectors)
        if selected or len(self.emulator.identities) == 1:
            return None
        return _fault(400, {"error": "invalid_request", "error_description": MULTIPLE_IDENTITIES})


class ExpiredFederatedToken(Scenario):
    """The federated token file holds an assertion that expired ``expired_for`` seconds ago (the kubelet stopped
    rotating it, or the file was copied); Entra refuses any expired assertion with AADSTS700024. After
    ``rotate_assertion()`` the file holds a fresh one and tokens are issued again."""

    name = "expired_federated_token"
    summary = "the workload identity token file has expired: Entra answers AADSTS700024"
    sources = (ManagedIdentitySource.WORKLOAD_IDENTITY,)
    default_source = ManagedIdentitySource.WORKLOAD_IDENTITY

    def __init__(self, expired_for: float = 3600.0) -> None:
        super().__init__()
        self.expired_for = _positive("expired_for", expired_for)

    def attach(self, emulator: Emulator) -> None:
        super().attach(emulator)
        now = int(emulator._clock())
        expiry = now - int(self.expired_for)
        claims = {
            "aud": ["api://AzureADTokenExchange"],
            "iss": f"https://oidc.msi-emulator.invalid/{emulator.tenant_id}/",
            "sub": "system:serviceaccount:default:workload-identity-sa",
            "iat": expiry - 3600,
            "nbf": expiry - 3600,
            "exp": expiry,
            "jti": str(uuid.uuid4()),
        }
        workload = emulator._workload()
        path = emulator.federated_token_file
        assertion = mint_jwt(claims, uuid.uuid4().bytes)
        with workload._lock:
            write_atomically(path, assertion)
            workload.assertion = assertion

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        assert self.emulator is not None
        try:
            claims = decode_jwt(request.form.get("client_assertion", ""))
            issued, expiry = int(claims["nbf"]), int(claims["exp"])
        except (ValueError, KeyError, TypeError):
            return None  # not an assertion of ours: the usual refusals apply
        now = self.emulator._clock()
        if issued <= now < expiry:
            return None
        from .sources.workload_identity import entra_body

        text = (
            f"Client assertion is not within its valid time range. Current time: {_iso(now)}, assertion valid from "
            f"{_iso(issued)}, expiry time of assertion {_iso(expiry)}. Review the documentation at "
            "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."
        )
        return _fault(400, entra_body("invalid_client", 700024, text, now=now))


def _iso(seconds: float) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class SlowEndpoint(Scenario):
    """Every token answer comes ``seconds`` late (the usual answer, once it comes)."""

    name = "slow_endpoint"
    summary = "the endpoint answers, but only after seconds"

    def __init__(self, seconds: float = 5.0) -> None:
        super().__init__()
        self.seconds = _positive("seconds", seconds)

    def answer(self, request: RecordedRequest, elapsed: float) -> Fault | None:
        return _fault(200, delay=self.seconds)


SCENARIOS: dict[str, type[Scenario]] = {
    kind.name: kind
    for kind in (
        DockerDesktopImds,
        IdentityNotYetAssigned,
        ImdsThrottling,
        ContainerAppsStarting,
        SingleUserAssigned,
        ExpiredFederatedToken,
        SlowEndpoint,
    )
}


def scenario(name: str | Scenario, **options: Any) -> Scenario:
    """The scenario called ``name`` (a key of ``SCENARIOS``), with its options; a ``Scenario`` is returned as is."""
    if isinstance(name, Scenario):
        if options:
            raise TypeError("options are for a scenario given by name")
        return name
    try:
        kind = SCENARIOS[name]
    except KeyError:
        raise ValueError(f"unknown scenario {name!r}; the scenarios are: {', '.join(SCENARIOS)}") from None
    return kind(**options)
