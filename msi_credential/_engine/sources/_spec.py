"""What a source module declares: its protocol as data, plus small pure functions where data is not enough.

The flow (``_engine/flow.py``) and the answer mapping (``_engine/response.py``) know no source by name: everything in
which one source differs from another is a field of its ``SourceSpec``.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any, Callable, Literal, Optional, Union

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Effect, EffectResult, Request, Response, TransportFailure
from ..identity import Identity, SelectorKind
from ..record import Record


class RequestParts(Record):
    """Per-call inputs of a request besides config and identity.

    The flow fills in every field for every source; ``build`` sends what its protocol has a wire form for and ignores
    the rest (only Service Fabric and workload identity send capabilities, only workload identity sends claims).
    """

    resource: str
    connect_timeout: float
    read_timeout: float
    capabilities: tuple[str, ...] = ()
    token_sha256_to_refresh: Optional[str] = None
    claims: Optional[str] = None
    client_assertion: Optional[str] = None


class Absence(Record):
    """A source that may simply not be there (IMDS off Azure): how the engine tells "not here" from "refused".

    Not being there is ``CredentialUnavailableError`` with ``code``, so a credential chain moves on: an endpoint that
    does not answer after its retries, or answers with a body that is not JSON. When the call comes from a
    credential chain, until the endpoint first answers in this process (and while ``fails_fast(config)``), a
    connection failure is final at once and the connect timeout is ``first_connect_timeout`` (docs/protocols.md
    section 7).
    """

    code: str
    first_connect_timeout: float
    fails_fast: Callable[[SourceConfig], bool]


class ErrorAnswer(Record):
    """What a source's error mapping sees of a non-2xx answer: the status, the server's code and description
    (both scrubbed of secrets)."""

    status: int
    code: Optional[str]
    description: str


class ErrorMeaning(Record):
    """A source's reading of an error answer: the ``error_code``, the message's summary, and whether it means
    "managed identity is not available here" (unavailable) rather than a refusal (failed)."""

    error_code: str
    summary: str = "refused the token request"
    unavailable: bool = False


# The Arc-style challenge (docs/protocols.md section 5): given the config, the request just sent, its 401 answer and
# the list of secrets to scrub (to which it adds what it reads), yield effects and return the final outcome.
Challenge = Callable[
    [SourceConfig, Request, Response, list[str]],
    Generator[Effect, EffectResult, Union[Response, TransportFailure]],
]


def no_environment_client_id(config: SourceConfig, identity: Identity) -> Optional[str]:
    """The client id a source takes from the environment when no user-assigned identity is chosen (Machine
    Learning's DEFAULT_IDENTITY_CLIENT_ID; detection leaves it None for the others)."""
    return config.default_client_id if not identity.user_assigned else None


class SourceSpec(Record):
    """A hosting environment's protocol, as data."""

    source: ManagedIdentitySource
    # user-assigned selectors the endpoint takes, with their wire names; an absent kind is refused
    selectors: Mapping[SelectorKind, str]
    # the request of one attempt (docs/protocols.md section 2): a pure function
    build: Callable[[SourceConfig, Identity, RequestParts], Request]
    # a human name for the endpoint, in messages
    label: str
    retry: Literal["imds", "standard"] = "standard"
    # claims= sends the SHA-256 of the cached token (token_sha256_to_refresh) so the endpoint revokes it
    supports_revocation: bool = False
    # answers a 401 with this challenge (Azure Arc); None: a 401 is an error like any other
    challenge: Optional[Challenge] = None
    # checks a 2xx answer's body before its token is accepted (Arc's echo of the identity); raises ManagedIdentityError
    confirm: Optional[Callable[[Identity, Mapping[str, Any]], None]] = None
    # reads the federated token file (a ReadAssertion effect) before every attempt: RequestParts.client_assertion
    reads_assertion: bool = False
    # the client id that decides which token comes back (the cache key), besides the selector
    client_id: Callable[[SourceConfig, Identity], Optional[str]] = no_environment_client_id
    # refuses, before any socket, what this source cannot use: (error_code, message), or None when usable
    check: Optional[Callable[[SourceConfig, Identity], Optional[tuple[str, str]]]] = None
    # whether the opt-in machine cache may serve this source's tokens to other processes
    machine_cache: bool = True
    # a source that may not be there at all; None: a detected source is there, and its failures are refusals
    absence: Optional[Absence] = None
    # the source's own meanings of error answers, after the common ones (redirects); None: the generic mapping
    read_error: Optional[Callable[[ErrorAnswer], Optional[ErrorMeaning]]] = None


def query_params(
    spec_selectors: Mapping[SelectorKind, str],
    identity: Identity,
    api_version: str,
    resource: str,
    *,
    first: tuple[tuple[str, str], ...] = (),
) -> tuple[tuple[str, str], ...]:
    """api-version, resource, the identity selector under its wire name, then extra identity_config keys."""
    params: list[tuple[str, str]] = [("api-version", api_version), ("resource", resource), *first]
    if identity.value is not None:
        params.append((spec_selectors[identity.kind], identity.value))
    taken = {name for name, _ in params}
    params.extend((key, value) for key, value in identity.extra if key not in taken)
    return tuple(params)


def get_request(
    config: SourceConfig,
    parts: RequestParts,
    params: tuple[tuple[str, str], ...],
    headers: Mapping[str, str],
    *,
    pin_sha1: Optional[str] = None,
) -> Request:
    """The GET to the detected endpoint that most sources' protocol is, with the call's timeouts."""
    return Request(
        "GET",
        config.endpoint,
        params=params,
        headers=headers,
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
        pin_sha1=pin_sha1,
    )
