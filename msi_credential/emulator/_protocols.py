"""The wire protocol of every emulated managed identity endpoint, as data plus small pure functions."""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Union

from msi_credential._source import ManagedIdentitySource

JsonBody = Union[bytes, Mapping[str, Any]]

# Error body styles. IMDS, Azure Arc, Cloud Shell: {"error": code, "error_description": message}.
# App Service, Machine Learning: {"statusCode": n, "message": m, "correlationId": id}.
# Service Fabric: {"error": {"correlationId": id, "code": c, "message": m}}.
OAUTH = "oauth"
APP_SERVICE = "app_service"
SERVICE_FABRIC = "service_fabric"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


@dataclass(frozen=True)
class UserAssignedIdentity:
    """The ids of one managed identity."""

    client_id: str
    object_id: str
    resource_id: str


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    body: bytes
    scheme: str

    def __repr__(self) -> str:
        # Header values and the body may carry secrets: show the header names only.
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, headers={sorted(self.headers)!r})"
        )


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON object (or raw bytes) and extra headers."""

    status: int
    body: JsonBody = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceSpec:
    """How one source's token endpoint is called and how it answers."""

    source: ManagedIdentitySource
    path: str
    method: str
    scheme: str
    api_version: str | None
    secret_header: str | None  # lower-case name of the header that must carry the secret
    metadata_header: bool  # requires ``Metadata: true``
    form_body: bool  # parameters in an application/x-www-form-urlencoded body instead of the query
    selectors: Mapping[str, str]  # wire parameter -> UserAssignedIdentity attribute
    rejected_params: tuple[str, ...]  # identity parameters the endpoint refuses outright
    error_style: str
    # "oauth": string times with expires_in; "app_service": string expires_on; "number": JSON int expires_on
    token_style: str
    client_id_in_body: bool
    echo_selectors: bool  # Azure Arc: the answer repeats the identity selector that was asked for
    environment: tuple[
        tuple[str, str], ...
    ]  # (variable, one of url/base/secret/thumbprint/default_client_id)


_OAUTH_SELECTORS = {"client_id": "client_id", "object_id": "object_id", "msi_res_id": "resource_id"}
_METADATA = "/metadata/identity/oauth2/token"

SPECS: dict[ManagedIdentitySource, SourceSpec] = {
    ManagedIdentitySource.IMDS: SourceSpec(
        source=ManagedIdentitySource.IMDS,
        path=_METADATA,
        method="GET",
        scheme="http",
        api_version="2018-02-01",
        secret_header=None,
        metadata_header=True,
        form_body=False,
        selectors=_OAUTH_SELECTORS,
        rejected_params=(),
        error_style=OAUTH,
        token_style="oauth",
        client_id_in_body=True,
        echo_selectors=False,
        environment=(("AZURE_POD_IDENTITY_AUTHORITY_HOST", "base"),),
    ),
    ManagedIdentitySource.APP_SERVICE: SourceSpec(
        source=ManagedIdentitySource.APP_SERVICE,
        path="/msi/token",
        method="GET",
        scheme="http",
        api_version="2019-08-01",
        secret_header="x-identity-header",
        metadata_header=False,
        form_body=False,
        selectors={"client_id": "client_id", "object_id": "object_id", "mi_res_id": "resource_id"},
        rejected_params=(),
        error_style=APP_SERVICE,
        token_style="app_service",
        client_id_in_body=True,
        echo_selectors=False,
        environment=(("IDENTITY_ENDPOINT", "url"), ("IDENTITY_HEADER", "secret")),
    ),
    ManagedIdentitySource.AZURE_ARC: SourceSpec(
        source=ManagedIdentitySource.AZURE_ARC,
        path=_METADATA,
        method="GET",
        scheme="http",
        api_version="2020-06-01",
        secret_header=None,
        metadata_header=True,
        form_body=False,
        selectors=_OAUTH_SELECTORS,
        rejected_params=(),
        error_style=OAUTH,
        token_style="oauth",
        client_id_in_body=False,
        echo_selectors=True,
        environment=(("IDENTITY_ENDPOINT", "url"), ("IMDS_ENDPOINT", "base")),
    ),
    ManagedIdentitySource.CLOUD_SHELL: SourceSpec(
        source=ManagedIdentitySource.CLOUD_SHELL,
        path="/oauth2/token",
        method="POST",
        scheme="http",
        api_version=None,
        secret_header=None,
        metadata_header=True,
        form_body=True,
        selectors={},
        rejected_params=("client_id", "object_id", "msi_res_id", "mi_res_id"),
        error_style=OAUTH,
        token_style="oauth",
        client_id_in_body=False,
        echo_selectors=False,
        environment=(("MSI_ENDPOINT", "url"),),
    ),
    ManagedIdentitySource.SERVICE_FABRIC: SourceSpec(
        source=ManagedIdentitySource.SERVICE_FABRIC,
        path=_METADATA,
        method="GET",
        scheme="https",
        api_version="2019-07-01-preview",
        secret_header="secret",
        metadata_header=False,
        form_body=False,
        selectors={},  # the endpoint ignores runtime identity parameters
        rejected_params=(),
        error_style=SERVICE_FABRIC,
        token_style="number",
        client_id_in_body=False,
        echo_selectors=False,
        environment=(
            ("IDENTITY_ENDPOINT", "url"),
            ("IDENTITY_HEADER", "secret"),
            ("IDENTITY_SERVER_THUMBPRINT", "thumbprint"),
        ),
    ),
    ManagedIdentitySource.MACHINE_LEARNING: SourceSpec(
        source=ManagedIdentitySource.MACHINE_LEARNING,
        path="/MSI/auth",
        method="GET",
        scheme="http",
        api_version="2017-09-01",
        secret_header="secret",
        metadata_header=False,
        form_body=False,
        selectors={"clientid": "client_id"},
        rejected_params=(),
        error_style=APP_SERVICE,
        token_style="number",
        client_id_in_body=False,
        echo_selectors=False,
        environment=(
            ("MSI_ENDPOINT", "url"),
            ("MSI_SECRET", "secret"),
            ("DEFAULT_IDENTITY_CLIENT_ID", "default_client_id"),
        ),
    ),
}

# The error code of each kind of refusal: (OAuth style, Service Fabric style). App Service style has none.
_CODES = {
    "bad_request": ("invalid_request", "BadRequest"),
    "not_found": ("not_found", "NotFound"),
    "method": ("method_not_allowed", "MethodNotAllowed"),
    "secret": ("unauthorized_client", "SecretHeaderNotFound"),
    "api_version": ("invalid_request", "InvalidApiVersion"),
    "resource": ("invalid_request", "ArgumentNullOrEmpty"),
    "identity": ("invalid_request", "ManagedIdentityNotFound"),
    "challenge": ("unauthorized", "Unauthorized"),
    "too_large": ("invalid_request", "RequestEntityTooLarge"),
}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def error_reply(
    spec: SourceSpec, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None
) -> Reply:
    """An error answer in the source's body shape; ``kind`` is a key of ``_CODES``."""
    oauth_code, fabric_code = _CODES[kind]
    body: dict[str, Any]
    if spec.error_style == OAUTH:
        body = {"error": oauth_code, "error_description": message}
    elif spec.error_style == APP_SERVICE:
        body = {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}
    else:
        body = {"error": {"correlationId": str(uuid.uuid4()), "code": fabric_code, "message": message}}
    return Reply(status, body, dict(headers or {}))


def default_error(spec: SourceSpec, status: int) -> dict[str, Any]:
    """A plausible error body of the source's shape for a scripted status without a body."""
    phrase = _phrase(status)
    if spec.error_style == OAUTH:
        code = "invalid_request" if status == 400 else phrase.lower().replace(" ", "_").replace("-", "_")
        return {"error": code or f"http_{status}", "error_description": phrase}
    if spec.error_style == APP_SERVICE:
        return {"statusCode": status, "message": phrase, "correlationId": str(uuid.uuid4())}
    code = "".join(word.capitalize() for word in phrase.replace("-", " ").split()) or f"Http{status}"
    return {"error": {"correlationId": str(uuid.uuid4()), "code": code, "message": phrase}}


def parameters(spec: SourceSpec, request: RecordedRequest) -> dict[str, str]:
    """Where the source reads its parameters from: the form body (Cloud Shell) or the query."""
    return request.form if spec.form_body else request.query


def selectors_of(spec: SourceSpec, params: Mapping[str, str]) -> dict[str, str]:
    """The identity selectors present in ``params`` (wire name -> value)."""
    return {name: params[name] for name in spec.selectors if name in params}


def _secret_matches(given: str | None, secret: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def check_request(spec: SourceSpec, request: RecordedRequest, secret: str) -> Reply | None:
    """The error the real endpoint gives for ``request``, or None when it is well formed."""
    if request.path != spec.path:
        return error_reply(spec, 404, "not_found", f"No endpoint at {request.path}")
    if request.method != spec.method:
        return error_reply(
            spec, 405, "method", f"Method {request.method} is not allowed", {"Allow": spec.method}
        )
    headers = request.headers
    if spec.secret_header is not None:
        given = headers.get(spec.secret_header)
        if not _secret_matches(given, secret):
            if spec.error_style == SERVICE_FABRIC:
                return error_reply(spec, 401, "secret", "Secret is not found in the request headers.")
            status = 401 if given is None else 403
            return error_reply(
                spec, status, "secret", f"Unauthorized: {spec.secret_header} header missing or invalid"
            )
    if spec.metadata_header and headers.get("metadata", "").strip().lower() != "true":
        return error_reply(spec, 400, "bad_request", "Required metadata header not specified")
    if spec.form_body:
        content_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != FORM_CONTENT_TYPE:
            return error_reply(spec, 400, "bad_request", f"Content-Type must be {FORM_CONTENT_TYPE}")
    params = parameters(spec, request)
    if spec.api_version is not None:
        version = request.query.get("api-version")
        if version is None:
            return error_reply(spec, 400, "api_version", "Required query variable 'api-version' is missing")
        if version != spec.api_version:
            return error_reply(spec, 400, "api_version", f"Unsupported api-version {version!r}")
    if not params.get("resource", "").strip():
        return error_reply(spec, 400, "resource", "Required parameter 'resource' is missing or empty")
    refused = [name for name in spec.rejected_params if name in params]
    if refused:
        return error_reply(spec, 400, "bad_request", "User-assigned identities are not supported here")
    if len(selectors_of(spec, params)) > 1:
        return error_reply(spec, 400, "bad_request", "Only one identity selector may be given")
    return None


def not_found_reply(spec: SourceSpec) -> Reply:
    """The answer for an identity selector that matches no assigned identity."""
    if spec.error_style == APP_SERVICE:
        return error_reply(spec, 400, "identity", "Unable to load the proper Managed Identity.")
    if spec.error_style == SERVICE_FABRIC:
        return error_reply(spec, 404, "identity", "Managed identity not found.")
    return error_reply(spec, 400, "identity", "Identity not found")


def resolve_identity(
    spec: SourceSpec,
    selectors: Mapping[str, str],
    identities: Sequence[UserAssignedIdentity],
    system: UserAssignedIdentity,
    default_client_id: str | None,
) -> UserAssignedIdentity | None:
    """The identity that ``selectors`` (at most one) names; None when no assigned identity matches."""
    if not selectors:
        return system
    [(name, value)] = selectors.items()
    wanted = value.lower()
    machine_learning = spec.source is ManagedIdentitySource.MACHINE_LEARNING
    if machine_learning and default_client_id and wanted == default_client_id.lower():
        return system
    attribute = spec.selectors[name]
    for identity in identities:
        if str(getattr(identity, attribute)).lower() == wanted:
            return identity
    return None


def token_reply(
    spec: SourceSpec,
    *,
    access_token: str,
    resource: str,
    now: int,
    lifetime: int,
    identity: UserAssignedIdentity,
    selectors: Mapping[str, str],
) -> Reply:
    """The 200 answer carrying ``access_token`` in the source's field layout."""
    expires_on = now + lifetime
    body: dict[str, Any] = {"access_token": access_token}
    if spec.token_style == "oauth":
        body.update(
            expires_in=str(lifetime),
            expires_on=str(expires_on),
            ext_expires_in=str(lifetime),
            not_before=str(now - 60),
        )
    elif spec.token_style == "app_service":
        body["expires_on"] = str(expires_on)
    else:
        body["expires_on"] = expires_on
    body["resource"] = resource
    body["token_type"] = "Bearer"
    if spec.client_id_in_body:
        body["client_id"] = identity.client_id
    if spec.echo_selectors:
        for name in selectors:
            body[name] = getattr(identity, spec.selectors[name])
    return Reply(200, body)


def environment(spec: SourceSpec, values: Mapping[str, str | None]) -> dict[str, str]:
    """The variables that point a credential at the endpoint; unset values are left out."""
    result: dict[str, str] = {}
    for variable, key in spec.environment:
        value = values.get(key)
        if value:
            result[variable] = value
    return result


def encode_body(body: JsonBody) -> bytes:
    """The bytes of a reply body: JSON for a mapping."""
    if isinstance(body, Mapping):
        return json.dumps(dict(body)).encode("utf-8")
    return body
