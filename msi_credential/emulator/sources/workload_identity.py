"""Workload identity's side of the wire: Microsoft Entra's v2.0 token endpoint, client credentials with the
federated token file's assertion (docs/protocols.md section 10), Entra's errors and discovery document, and the
federated token file itself, rotated as the kubelet does."""

from __future__ import annotations

import os
import re
import secrets
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, Optional, Union

from msi_credential._engine.sources import workload_identity as engine
from msi_credential._source import ManagedIdentitySource

from .._tokens import mint_jwt
from .._wire import (
    FORM_CONTENT_TYPE,
    Minted,
    RecordedRequest,
    Reply,
    UserAssignedIdentity,
    find_identity,
    media_type,
    secret_matches,
    write_atomically,
)
from ._endpoint import Answers, Expects, TokenEndpoint
from ._styles import CODES, ErrorStyle, oauth_code, phrase

ASSERTION_TYPE = engine.ASSERTION_TYPE
# The file name the workload identity webhook projects the service account token under.
FEDERATED_TOKEN_FILE_NAME = "azure-identity-token"
ASSERTION_LIFETIME = 3600  # seconds, the projected service account token's default
# Entra, like IMDS and the other endpoints, takes its paths in any letter case and with a trailing slash.
_TOKEN_PATH = re.compile(r"/([^/]+)/oauth2/v2\.0/token/?", re.IGNORECASE)
_METADATA_PATH = re.compile(r"/([^/]+)/v2\.0/\.well-known/openid-configuration/?", re.IGNORECASE)
_APP_NOT_FOUND = (
    "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the "
    "application has not been installed by the administrator of the tenant or consented to by any user in the "
    "tenant. You may have sent your authentication request to the wrong tenant."
)
# Each refusal of a token request: (status, error, AADSTS number, description with {fields}).
_REFUSALS: dict[str, tuple[int, str, Optional[int], str]] = {
    "tenant": (
        400,
        "invalid_request",
        90002,
        "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the "
        "correct cloud.",
    ),
    "method": (
        400,
        "invalid_request",
        900561,
        "The endpoint only accepts POST, OPTIONS requests. Received a {method} request.",
    ),
    "missing": (
        400,
        "invalid_request",
        900144,
        "The request body must contain the following parameter: '{name}'.",
    ),
    "grant_type": (
        400,
        "unsupported_grant_type",
        70003,
        "The app requested an unsupported grant type '{grant}'.",
    ),
    "client_id": (400, "unauthorized_client", 700016, _APP_NOT_FOUND),
    "scope": (
        400,
        "invalid_scope",
        1002012,
        "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with "
        "/.default suffixed to the resource identifier (application ID URI).",
    ),
    "no_assertion": (
        401,
        "invalid_client",
        7000218,
        "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
    ),
    "assertion_type": (
        400,
        "invalid_request",
        90100,
        "client_assertion_type parameter is empty or not valid.",
    ),
    "rotated": (
        400,
        "invalid_client",
        700024,
        "Client assertion is not within its valid time range. The federated token file has been rotated since "
        "this assertion was read.",
    ),
    "assertion": (
        400,
        "invalid_client",
        70021,
        "No matching federated identity record found for presented assertion.",
    ),
}


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
    status: int, error: str, number: Optional[int], text: str, *, now: Optional[float] = None
) -> Reply:
    """An Entra error answer."""
    return Reply(status, entra_body(error, number, text, now=now))


class EntraErrors(ErrorStyle):
    """Microsoft Entra: OAuth plus ``error_codes``, ``timestamp``, ``trace_id``, ``correlation_id``."""

    def body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        code = CODES[kind][0]
        return entra_body(code, 90100 if code == "invalid_request" else None, message)

    def default_body(self, status: int) -> dict[str, Any]:
        if status == 429 or status >= 500:
            return entra_body(
                "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."
            )
        return entra_body(oauth_code(status), None, phrase(status))


class WorkloadIdentity(TokenEndpoint):
    source = ManagedIdentitySource.WORKLOAD_IDENTITY
    # the client id is a form field of the grant, checked with the rest of it (see _grant)
    expects = Expects("/{tenant}/oauth2/v2.0/token", method="POST", form=True)
    answers = Answers(EntraErrors())
    environment = {
        "AZURE_FEDERATED_TOKEN_FILE": "token_file",
        "AZURE_TENANT_ID": "tenant",
        "AZURE_CLIENT_ID": "client_id",
        "AZURE_AUTHORITY_HOST": "base",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._assertion_key = secrets.token_bytes(32)
        self.token_file: str | None = None  # the federated token file the emulator writes
        self.assertion: str | None = None  # what it holds
        self._retired: set[str] = set()  # what it held before: refused as expired

    def token_path(self) -> str:
        return self.expects.path.replace("{tenant}", self.emulator.tenant_id)

    def environ(self, values: Mapping[str, Optional[str]]) -> dict[str, str]:
        return super().environ({**values, "token_file": self.token_file})

    # ------------------------------------------------------------------ the federated token file

    def prepare(self) -> None:
        path = os.path.join(self.emulator._temp_dir("msi-emulator-wi-"), FEDERATED_TOKEN_FILE_NAME)
        assertion = self._mint_assertion()
        with self._lock:
            write_atomically(path, assertion)
            self.token_file, self.assertion = path, assertion
            self._retired.clear()

    def cleanup(self) -> None:
        with self._lock:
            self.token_file = self.assertion = None
            self._retired.clear()

    def rotate_assertion(self, path: str) -> str:
        assertion = self._mint_assertion()
        with self._lock:
            write_atomically(path, assertion)
            if self.assertion is not None:
                self._retired.add(self.assertion)
            self.assertion = assertion
        return assertion

    def _mint_assertion(self) -> str:
        """A JWT shaped like a projected Kubernetes service account token for workload identity."""
        now = int(self.emulator._clock())
        claims = {
            "aud": ["api://AzureADTokenExchange"],
            "iss": f"https://oidc.msi-emulator.invalid/{self.emulator.tenant_id}/",
            "sub": "system:serviceaccount:default:workload-identity-sa",
            "iat": now,
            "nbf": now,
            "exp": now + ASSERTION_LIFETIME,
            "jti": str(uuid.uuid4()),
        }
        return mint_jwt(claims, self._assertion_key)

    # ------------------------------------------------------------------ Entra's token endpoint

    def answer(self, request: RecordedRequest) -> Reply:
        now = self.emulator._clock()
        grant = self._grant(request, now)
        if isinstance(grant, Reply):
            return grant
        minted = self.emulator._mint(*grant, int(now))
        return Reply(200, self.token_body(minted, {}))

    def token_body(self, minted: Minted, selectors: Mapping[str, str]) -> dict[str, Any]:
        return {
            "token_type": "Bearer",
            "expires_in": minted.lifetime,
            "ext_expires_in": minted.lifetime,
            "access_token": minted.token,
        }

    def _grant(self, request: RecordedRequest, now: float) -> Union[Reply, tuple[str, UserAssignedIdentity]]:
        """The (resource, identity) of a client credentials request with an assertion Entra accepts, else the
        refusal; the resource is the scope without "/.default", the token's audience."""
        emulator = self.emulator
        tenant_id = emulator.tenant_id

        def refuse(kind: str, **fields: str) -> Reply:
            status, error, number, text = _REFUSALS[kind]
            return entra_error(status, error, number, text.format(**fields), now=now)

        match = _TOKEN_PATH.fullmatch(request.path)
        metadata = _METADATA_PATH.fullmatch(request.path)
        if match is None and metadata is not None and request.method in ("GET", "HEAD"):
            return _openid_configuration(metadata.group(1), tenant_id, emulator._base(), now)
        if match is None:
            return entra_error(404, "not_found", None, f"No endpoint at {request.path}.", now=now)
        if match.group(1).lower() != tenant_id.lower():
            return refuse("tenant", tenant=match.group(1))
        if request.method != "POST":
            return refuse("method", method=request.method)
        if media_type(request.headers) != FORM_CONTENT_TYPE:
            return refuse("missing", name="grant_type")  # Entra reads nothing from a body of another type
        form = request.form
        for name in ("grant_type", "client_id", "scope"):
            if not form.get(name, "").strip():
                return refuse("missing", name=name)
        if form["grant_type"] != "client_credentials":
            return refuse("grant_type", grant=form["grant_type"])
        apps = [emulator.system_identity, *emulator.identities]
        identity = find_identity(apps, "client_id", form["client_id"].strip())
        if identity is None:
            return refuse("client_id", client_id=form["client_id"], tenant=tenant_id)
        scope = form["scope"].strip()
        resource = scope[: -len("/.default")] if scope.endswith("/.default") else ""
        if not resource or " " in scope:
            return refuse("scope", scope=scope)
        given = form.get("client_assertion", "")
        if not given:
            return refuse("no_assertion")
        assertion_type = form.get("client_assertion_type", "")
        if not assertion_type:
            return refuse("missing", name="client_assertion_type")
        if assertion_type != ASSERTION_TYPE:
            return refuse("assertion_type")
        refusal = self._assertion_refusal(given)
        if refusal is not None:
            return refuse(refusal)
        return resource, identity

    def _assertion_refusal(self, given: str) -> str | None:
        """Whether ``given`` is what the federated token file holds now (None), held before, or never."""
        with self._lock:
            path, retired = self.token_file, set(self._retired)
        current = _read_assertion(path) if path is not None else None
        if current is not None and secret_matches(given, current):
            return None
        return "rotated" if given in retired else "assertion"


def _read_assertion(path: str) -> str | None:
    """The federated token file's contents, stripped; None when it is missing, unreadable or empty."""
    try:
        with open(path, "rb") as stream:
            text = stream.read(1024 * 1024).decode("utf-8", "replace").strip()
    except OSError:
        return None
    return text or None


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
            "issuer": f"{base}/v2.0",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
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
