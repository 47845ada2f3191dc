"""What every emulated token endpoint does the same way. A source module subclasses ``TokenEndpoint`` and declares
only where its endpoint differs: path, method, headers, parameter names, error style, answer layout, variables, and
(where it has one) a challenge."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from msi_credential._source import ManagedIdentitySource

from .. import _wire as wire
from .._wire import Minted, RecordedRequest, Reply, UserAssignedIdentity
from ._styles import OAUTH_ERRORS, ErrorStyle, oauth_expiry

if TYPE_CHECKING:
    from .._server import Emulator


@dataclass(frozen=True)
class Expects:
    """What a well-formed token request carries; anything else is refused as the real endpoint refuses it."""

    path: str
    api_version: Optional[str] = None  # the api-version the engine sends; None: the endpoint takes none
    # (kind, wire name) of each identity selector it takes: the engine's table; the kinds are the attribute names of
    # UserAssignedIdentity
    selectors: Iterable[tuple[str, str]] = ()
    method: str = "GET"
    scheme: str = "http"  # "https": served over https only
    secret_header: Optional[str] = None  # lower-case name of the header that must carry the secret
    metadata: bool = False  # requires ``Metadata: true``
    form: bool = False  # parameters in a form body instead of the query
    rejected: tuple[str, ...] = ()  # identity parameters the endpoint refuses outright
    older_api_versions: tuple[str, ...] = ()  # other api-versions the endpoint still takes
    wire_selectors: Mapping[str, str] = field(init=False)  # wire name -> UserAssignedIdentity attribute

    def __post_init__(self) -> None:
        object.__setattr__(self, "selectors", tuple(self.selectors))
        object.__setattr__(self, "wire_selectors", {wire: kind for kind, wire in self.selectors})


@dataclass(frozen=True)
class Answers:
    """How the endpoint answers: its error style and the layout of a token answer."""

    errors: ErrorStyle = OAUTH_ERRORS
    expiry: Callable[[int, int], dict[str, Any]] = oauth_expiry
    client_id: bool = False  # the answer names the identity's client id


class TokenEndpoint:
    """One source's side of the wire, served by an ``Emulator`` (its plumbing: server, TLS, faults, minting)."""

    source: ClassVar[ManagedIdentitySource]
    expects: ClassVar[Expects]
    answers: ClassVar[Answers] = Answers()
    # variable -> the emulator value it holds (url, base, secret, thumbprint, default_client_id, tenant, client_id),
    # in print order; unset values are left out
    environment: ClassVar[Mapping[str, str]] = {}
    # None: a loopback certificate (for 127.0.0.1, ::1 and localhost); a name: a certificate for that name only,
    # signed by a CA of its own that the endpoint names in its variables
    server_name: ClassVar[Optional[str]] = None
    key_directory: Optional[str] = None  # Azure Arc: where challenge key files are written

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

    # ------------------------------------------------------------------ lifecycle and what a credential needs

    def prepare(self) -> None:
        """Write what the endpoint needs before serving (nothing by default)."""

    def cleanup(self) -> None:
        """Remove what ``prepare`` and the requests wrote (nothing by default)."""

    @property
    def errors(self) -> ErrorStyle:
        return self.answers.errors

    def token_path(self) -> str:
        return self.expects.path

    def environ(self, values: Mapping[str, Optional[str]]) -> dict[str, str]:
        """The variables that point a credential at the endpoint; unset values are left out."""
        return {variable: value for variable, key in self.environment.items() if (value := values.get(key))}

    def credential_kwargs(self) -> dict[str, Any]:
        """Extra private constructor arguments the credential needs."""
        return {}

    def issue_certificate(self, directory: str) -> tuple[str, str, str]:
        """With a ``server_name``: a new CA and a certificate for that name in ``directory`` (certfile, keyfile, the
        CA in PEM)."""
        raise NotImplementedError("this endpoint serves the loopback certificate")

    # ------------------------------------------------------------------ answering

    def answer(self, request: RecordedRequest) -> Reply:
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        challenge = self.challenge(request)
        if challenge is not None:
            return challenge
        params = request.form if self.expects.form else request.query
        selectors = {name: params[name] for name in self.expects.wire_selectors if name in params}
        identity = self.identity(selectors)
        if identity is None:
            return self.errors.not_found()
        minted = self.emulator._mint(params["resource"], identity, int(self.emulator._clock()))
        return Reply(200, self.token_body(minted, selectors))

    def refusal(self, request: RecordedRequest) -> Reply | None:
        """The error the real endpoint gives for ``request``, or None when it is well formed."""
        errors, expects = self.errors, self.expects
        if not wire.path_matches(self.token_path(), request.path):
            return errors.reply(404, "not_found", f"No endpoint at {request.path}")
        if request.method != expects.method:
            message = f"Method {request.method} is not allowed"
            return errors.reply(405, "method", message, {"Allow": expects.method})
        headers = request.headers
        if expects.secret_header is not None:
            given = headers.get(expects.secret_header)
            if not wire.secret_matches(given, self.emulator.secret):
                return errors.secret_refused(expects.secret_header, given)
        if expects.metadata and headers.get("metadata", "").strip().lower() != "true":
            return errors.reply(400, "bad_request", "Required metadata header not specified")
        if expects.form and wire.media_type(headers) != wire.FORM_CONTENT_TYPE:
            return errors.reply(400, "bad_request", f"Content-Type must be {wire.FORM_CONTENT_TYPE}")
        return self.parameter_refusal(request.form if expects.form else request.query, request.query)

    def parameter_refusal(self, params: Mapping[str, str], query: Mapping[str, str]) -> Reply | None:
        errors, expects = self.errors, self.expects
        if expects.api_version is not None:
            version = query.get("api-version")
            if version is None:
                return errors.reply(400, "api_version", "Required query variable 'api-version' is missing")
            if version != expects.api_version and version not in expects.older_api_versions:
                return errors.reply(400, "api_version", f"Unsupported api-version {version!r}")
        if not params.get("resource", "").strip():
            return errors.reply(400, "resource", "Required parameter 'resource' is missing or empty")
        if any(name in params for name in expects.rejected):
            return errors.reply(400, "bad_request", "User-assigned identities are not supported here")
        if sum(name in params for name in expects.wire_selectors) > 1:
            return errors.reply(400, "bad_request", "Only one identity selector may be given")
        return None

    def challenge(self, request: RecordedRequest) -> Reply | None:
        """The challenge a well-formed request must answer first (None: the endpoint has none)."""
        return None

    def identity(self, selectors: Mapping[str, str]) -> UserAssignedIdentity | None:
        """The identity ``selectors`` (at most one) names; None when no assigned identity matches."""
        if not selectors:
            return self.emulator.system_identity
        [(name, value)] = selectors.items()
        return wire.find_identity(self.emulator.identities, self.expects.wire_selectors[name], value)

    def token_body(self, minted: Minted, selectors: Mapping[str, str]) -> dict[str, Any]:
        """The 200 answer's fields for ``minted``, in the source's layout."""
        body: dict[str, Any] = {
            "access_token": minted.token,
            **self.answers.expiry(minted.now, minted.lifetime),
        }
        body["resource"] = minted.resource
        body["token_type"] = "Bearer"
        if self.answers.client_id:
            body["client_id"] = minted.identity.client_id
        return body
