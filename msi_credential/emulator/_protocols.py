"""The wire protocol of every emulated managed identity endpoint, as data plus small pure functions."""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any, Optional, Union

from msi_credential._source import ManagedIdentitySource

JsonBody = Union[bytes, Mapping[str, Any]]

# Error body styles. IMDS, Azure Arc, Cloud Shell: {"error": code, "error_description": message}.
# App Service, Machine Learning: {"statusCode": n, "message": m, "correlationId": id}.
# Service Fabric: {"error": {"correlationId": id, "code": c, "message": m}}.
# Microsoft Entra (workload identity): OAuth plus "error_codes", "timestamp", "trace_id", "correlation_id".
OAUTH = "oauth"
APP_SERVICE = "app_service"
SERVICE_FABRIC = "service_fabric"
ENTRA = "entra"

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
WORKLOAD_IDENTITY_PATH = "/{tenant}/oauth2/v2.0/token"
# Entra, like IMDS and the other endpoints, takes its paths in any letter case and with a trailing slash.
_ENTRA_TOKEN_PATH = re.compile(r"/([^/]+)/oauth2/v2\.0/token/?", re.IGNORECASE)
_ENTRA_METADATA_PATH = re.compile(r"/([^/]+)/v2\.0/\.well-known/openid-configuration/?", re.IGNORECASE)


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
    # The TLS server name (SNI) the client sent, over https; None when it sent none (or over http).
    server_name: Optional[str] = None

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
    # "oauth": string times with expires_in; "app_service": string expires_on; "number": JSON int expires_on;
    # "entra": JSON int expires_in and ext_expires_in only (the v2.0 token endpoint)
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
    ManagedIdentitySource.WORKLOAD_IDENTITY: SourceSpec(
        source=ManagedIdentitySource.WORKLOAD_IDENTITY,
        path=WORKLOAD_IDENTITY_PATH,  # "{tenant}" is replaced by the emulator's tenant id
        method="POST",
        scheme="http",
        api_version=None,
        secret_header=None,
        metadata_header=False,
        form_body=True,
        selectors={"client_id": "client_id"},
        rejected_params=(),
        error_style=ENTRA,
        token_style="entra",
        client_id_in_body=False,
        echo_selectors=False,
        environment=(
            ("AZURE_FEDERATED_TOKEN_FILE", "token_file"),
            ("AZURE_TENANT_ID", "tenant"),
            ("AZURE_CLIENT_ID", "client_id"),
            ("AZURE_AUTHORITY_HOST", "base"),
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
    if spec.error_style == ENTRA:
        number = 90100 if oauth_code == "invalid_request" else None
        return entra_error(status, oauth_code, number, message, headers=headers)
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
    if spec.error_style == ENTRA:
        if status == 429 or status >= 500:
            return entra_body(
                "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."
            )
        code = "invalid_request" if status == 400 else phrase.lower().replace(" ", "_").replace("-", "_")
        return entra_body(code or f"http_{status}", None, phrase)
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


def path_matches(expected: str, path: str) -> bool:
    """Whether ``path`` names the endpoint at ``expected`` as the services take it: any letter case, and one
    trailing slash allowed (msal-node asks IMDS for ``/metadata/identity/oauth2/token/``)."""
    if path.endswith("/") and len(path) > 1:
        path = path[:-1]
    return path.lower() == expected.lower()


def check_request(spec: SourceSpec, request: RecordedRequest, secret: str) -> Reply | None:
    """The error the real endpoint gives for ``request``, or None when it is well formed."""
    if not path_matches(spec.path, request.path):
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
    if spec.token_style == "entra":
        return Reply(
            200,
            {
                "token_type": "Bearer",
                "expires_in": lifetime,
                "ext_expires_in": lifetime,
                "access_token": access_token,
            },
        )
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


# ---------------------------------------------------------------------------------------------- Microsoft Entra


def entra_body(
    error: str, number: Optional[int], text: str, *, now: Optional[float] = None
) -> dict[str, Any]:
    """An Entra error body: ``error_description`` starts ``AADSTS<number>:`` and ends with the ids and time."""
    moment = datetime.fromtimestamp(now, timezone.utc) if now is not None else datetime.now(timezone.utc)
    timestamp = moment.strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
    prefix = f"AADSTS{number}: " if number is not None else ""
    body: dict[str, Any] = {
        "error": error,
        "error_description": (
            f"{prefix}{text} Trace ID: {trace_id} Correlation ID: {correlation_id} Timestamp: {timestamp}"
        ),
        "error_codes": [number] if number is not None else [],
        "timestamp": timestamp,
        "trace_id": trace_id,
        "correlation_id": correlation_id,
    }
    if number is not None:
        body["error_uri"] = f"https://login.microsoftonline.com/error?code={number}"
    return body


def entra_error(
    status: int,
    error: str,
    number: Optional[int],
    text: str,
    *,
    now: Optional[float] = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """An Entra error answer."""
    return Reply(status, entra_body(error, number, text, now=now), dict(headers or {}))


def _openid_configuration(tenant: str, tenant_id: str, authority: str, now: float) -> Reply:
    """Entra's OpenID Connect discovery document of the tenant, its endpoints on the emulator."""
    if tenant.lower() != tenant_id.lower():
        return entra_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.", now=now)
    base = f"{authority}/{tenant_id}"
    return Reply(
        200,
        {
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "issuer": f"{authority}/{tenant_id}/v2.0",
            "jwks_uri": f"{authority}/{tenant_id}/discovery/v2.0/keys",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "tenant_region_scope": "WW",
        },
    )


@dataclass(frozen=True)
class WorkloadGrant:
    """A client credentials request with a client assertion that Entra accepts."""

    identity: UserAssignedIdentity
    resource: str  # the scope without "/.default": the token's audience


def _missing(name: str, now: float) -> Reply:
    return entra_error(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{name}'.",
        now=now,
    )


def check_workload_request(
    request: RecordedRequest,
    *,
    tenant_id: str,
    identities: Sequence[UserAssignedIdentity],
    assertion: Optional[str],
    retired: Container[str],
    now: float,
    authority: str = "",
) -> Union[Reply, WorkloadGrant]:
    """Entra's v2.0 token endpoint, client credentials with a federated client assertion (docs/protocols.md section 10).

    ``identities``: the apps whose client id may ask; ``assertion``: what the federated token file holds now (None when
    it is missing or empty); ``retired``: the assertions the file held before (refused as expired); ``authority``:
    the emulator's base URL, for the OpenID configuration document (msal-node reads it before asking for a token).
    """
    match = _ENTRA_TOKEN_PATH.fullmatch(request.path)
    if match is None and request.method in ("GET", "HEAD"):
        metadata = _ENTRA_METADATA_PATH.fullmatch(request.path)
        if metadata is not None:
            return _openid_configuration(metadata.group(1), tenant_id, authority, now)
    if match is None:
        return entra_error(404, "not_found", None, f"No endpoint at {request.path}.", now=now)
    if match.group(1).lower() != tenant_id.lower():
        return entra_error(
            400,
            "invalid_request",
            90002,
            f"Tenant '{match.group(1)}' not found. Check to make sure you have the correct tenant ID and are "
            "signing into the correct cloud.",
            now=now,
        )
    if request.method != "POST":
        return entra_error(
            400,
            "invalid_request",
            900561,
            f"The endpoint only accepts POST, OPTIONS requests. Received a {request.method} request.",
            now=now,
        )
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        return _missing("grant_type", now)  # Entra reads nothing from a body of another type
    form = request.form
    for name in ("grant_type", "client_id", "scope"):
        if not form.get(name, "").strip():
            return _missing(name, now)
    grant_type = form["grant_type"]
    if grant_type != "client_credentials":
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
            now=now,
        )
    client_id = form["client_id"].strip().lower()
    identity = next((i for i in identities if i.client_id.lower() == client_id), None)
    if identity is None:
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{form['client_id']}' was not found in the directory '{tenant_id}'. "
            "This can happen if the application has not been installed by the administrator of the tenant or "
            "consented to by any user in the tenant. You may have sent your authentication request to the wrong "
            "tenant.",
            now=now,
        )
    scope = form["scope"].strip()
    resource = scope[: -len("/.default")] if scope.endswith("/.default") else ""
    if not resource or " " in scope:
        return entra_error(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
            "with /.default suffixed to the resource identifier (application ID URI).",
            now=now,
        )
    given = form.get("client_assertion", "")
    if not given:
        return entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            now=now,
        )
    assertion_type = form.get("client_assertion_type", "")
    if not assertion_type:
        return _missing("client_assertion_type", now)
    if assertion_type != ASSERTION_TYPE:
        return entra_error(
            400, "invalid_request", 90100, "client_assertion_type parameter is empty or not valid.", now=now
        )
    if assertion is None or not _secret_matches(given, assertion):
        if given in retired:
            return entra_error(
                400,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range. The federated token file has been "
                "rotated since this assertion was read.",
                now=now,
            )
        return entra_error(
            400,
            "invalid_client",
            70021,
            "No matching federated identity record found for presented assertion.",
            now=now,
        )
    return WorkloadGrant(identity=identity, resource=resource)
