"""A scripted driver for the sans-I/O engine: each effect gets the next canned answer, on an injected clock.

No sockets, no threads, no real time: these tests run in milliseconds, which is what mutation testing needs.
The machine cache is a dict of the script (``Script.machine``, entry name to entry) that several engines may share,
as processes share the directory; a queued ``MachineFound`` answers the next lookup instead.

Below the driver, what the engine's tests share to check outcomes: ``check_error`` (the error contract),
``failure`` and ``raised`` (the error a flow or a call raises), ``error_fields``, ``is_failed``, ``answer`` and
``error_for`` (an endpoint's answer and its mapping), ``with_cached_token`` (an engine holding a token).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

import pytest
from azure.core.credentials import AccessTokenInfo

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.effects import (
    KeyFileResult,
    MachineEntry,
    MachineFound,
    MachineLookup,
    MachineStore,
    MachineThrottle,
    ReadAssertion,
    ReadKeyFile,
    ReadProxyCA,
    Request,
    Response,
    Send,
    Sleep,
    TransportFailure,
)
from msi_credential._engine.flow import Engine, Flow
from msi_credential._engine.response import error_from_response
from msi_credential._setup import build_engine

Answer = Union[Response, TransportFailure, KeyFileResult, MachineFound]

APP_SERVICE = {"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token", "IDENTITY_HEADER": "header-secret"}
IMDS = {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:9"}
ARC = {
    "IDENTITY_ENDPOINT": "http://127.0.0.1:9/metadata/identity/oauth2/token",
    "IMDS_ENDPOINT": "http://127.0.0.1:9",
}
START = 1_700_000_000.0


class Clock:
    """A clock the test moves by hand (and the scripted driver moves by the seconds it sleeps)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token_response(
    token: str = "token-1",
    *,
    expires_in: int = 3600,
    status: int = 200,
    **extra: Any,
) -> Response:
    body = {"access_token": token, "expires_in": expires_in, "token_type": "Bearer", **extra}
    return Response(status, {"content-type": "application/json"}, json.dumps(body).encode())


def error_response(status: int, headers: Optional[Mapping[str, str]] = None) -> Response:
    body = json.dumps({"error": "server_error", "error_description": f"HTTP {status}"}).encode()
    return Response(status, {"content-type": "application/json", **(headers or {})}, body)


class Script:
    """Runs engine flows, answering each Send / ReadKeyFile / ReadAssertion / ReadProxyCA from a queue and the
    machine cache effects from ``machine`` (or a queued ``MachineFound``); records everything.

    ``send_takes`` / ``lookup_takes``: seconds the clock moves during each Send / MachineLookup (a lookup that waits
    for another process's request)."""

    def __init__(
        self,
        clock: Clock,
        *,
        send_takes: float = 0.0,
        lookup_takes: float = 0.0,
        machine: Optional[dict[str, MachineEntry]] = None,
    ) -> None:
        self.clock = clock
        self.answers: list[Answer] = []
        self.sent: list[Request] = []
        self.sleeps: list[float] = []
        self.reads: list[str] = []
        self.send_takes = send_takes
        self.lookup_takes = lookup_takes
        self.machine: dict[str, MachineEntry] = {} if machine is None else machine
        self.lookups: list[MachineLookup] = []
        self.stores: list[MachineStore] = []
        self.throttles: dict[str, float] = {}  # the machine cache's throttle notes, by name
        self.effects: list[object] = []  # every effect, in order

    def queue(self, *answers: Answer) -> Script:
        self.answers.extend(answers)
        return self

    def run(self, flow: Flow) -> AccessTokenInfo:
        result: Any = None
        try:
            while True:
                effect = flow.send(result)
                self.effects.append(effect)
                if isinstance(effect, Send):
                    self.sent.append(effect.request)
                    self.clock.now += self.send_takes
                    result = self.answers.pop(0)
                elif isinstance(effect, Sleep):
                    self.sleeps.append(effect.seconds)
                    self.clock.now += effect.seconds
                    result = None
                elif isinstance(effect, (ReadKeyFile, ReadAssertion, ReadProxyCA)):
                    self.reads.append(effect.path)
                    result = self.answers.pop(0)
                elif isinstance(effect, MachineLookup):
                    self.lookups.append(effect)
                    self.clock.now += self.lookup_takes
                    if self.answers and isinstance(self.answers[0], MachineFound):
                        result = self.answers.pop(0)
                    else:
                        until = self.throttles.get(effect.throttle or "", 0.0)
                        result = MachineFound(self.machine.get(effect.name), throttled_until=until)
                elif isinstance(effect, MachineStore):
                    self.stores.append(effect)
                    self.machine[effect.name] = effect.entry
                    result = None
                elif isinstance(effect, MachineThrottle):
                    self.throttles[effect.name] = max(effect.until, self.throttles.get(effect.name, 0.0))
                    result = None
                else:  # pragma: no cover - a new effect kind
                    raise AssertionError(f"unexpected effect {effect!r}")
        except StopIteration as stop:
            info: AccessTokenInfo = stop.value
            return info


def engine(
    environ: Mapping[str, str],
    clock: Callable[[], float],
    *,
    share_cache: bool = False,
    client_capabilities: Optional[list[str]] = None,
    **kwargs: Any,
) -> Engine:
    """An engine as a credential builds it, on the given environment and clock; its refresh point is not spread
    (cache.spread) unless the test passes ``_random``."""
    keywords: dict[str, Any] = {"_environ": dict(environ), "_clock": clock, "_random": lambda: 0.0, **kwargs}
    return build_engine(
        client_id=keywords.pop("client_id", None),
        object_id=keywords.pop("object_id", None),
        resource_id=keywords.pop("resource_id", None),
        identity_config=None,
        client_capabilities=client_capabilities,
        share_cache=share_cache,
        kwargs=keywords,
    )


# ---------------------------------------------------------------------------------------------- checking outcomes


def with_cached_token(
    clock: Clock, *, lifetime: int = 3600, **kwargs: Any
) -> tuple[Engine, Script, AccessTokenInfo]:
    """An App Service engine without retries that holds the token "old" (``lifetime`` seconds), and its script."""
    credential_engine = engine(APP_SERVICE, clock, retry_total=0, **kwargs)
    script = Script(clock).queue(token_response("old", expires_in=lifetime))
    return credential_engine, script, script.run(credential_engine.acquire("https://storage.azure.com"))


def check_error(
    error: BaseException,
    code: str,
    source: ManagedIdentitySource,
    *,
    status: Optional[int] = None,
    unavailable: bool = False,
) -> None:
    """The error contract: a ManagedIdentityError with this code, status and source, unavailable or failed."""
    assert isinstance(error, ManagedIdentityError)
    assert isinstance(error, CredentialUnavailableError) is unavailable
    assert error.error_code == code
    assert error.status_code == status
    assert error.source is source
    assert str(error)


def failure(script: Script, flow: Any) -> ManagedIdentityError:
    """The ManagedIdentityError that running ``flow`` raises."""
    with pytest.raises(ManagedIdentityError) as caught:
        script.run(flow)
    return caught.value


def raised(call: Callable[[], object]) -> ManagedIdentityError:
    """The ManagedIdentityError that ``call()`` raises."""
    with pytest.raises(ManagedIdentityError) as caught:
        call()
    return caught.value


def error_fields(error: ManagedIdentityError) -> tuple[Any, ...]:
    """What the contract gives of an error: unavailable or not, error_code, status_code, source, and its message."""
    return (
        isinstance(error, CredentialUnavailableError),
        error.error_code,
        error.status_code,
        error.source,
        str(error),
    )


def is_failed(error: BaseException) -> bool:
    """A refusal: a ManagedIdentityError that is not CredentialUnavailableError."""
    return isinstance(error, ManagedIdentityError) and not isinstance(error, CredentialUnavailableError)


def answer(status: int, body: Any = b"", headers: Optional[dict[str, str]] = None) -> Response:
    """An endpoint's answer: ``body`` as given when bytes, else as JSON."""
    if not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return Response(status, headers or {}, body)


def error_for(status: int, body: bytes, source: ManagedIdentitySource) -> ManagedIdentityError:
    """What the answer mapping makes of an error answer of ``source``."""
    return error_from_response(answer(status, body), source=source)
