"""Service Fabric: HTTPS to a pinned certificate (docs/protocols.md section 6), the stable api-version 2020-05-01.

A user-assigned identity is chosen by its object id, sent as ``principalId``; a client id or resource id is refused
before any request (the token service ignores them and would answer with the application's default identity).
Client capabilities travel as ``xms_cc``; ``claims=`` revokes the cached token through ``token_sha256_to_refresh``.
The machine cache never serves it: its secret is per application, and revocation goes through the token each
process holds (README "Sharing tokens between processes").
"""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig, normalise_thumbprint
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import ErrorAnswer, ErrorMeaning, RequestParts, SourceSpec, get_request, query_params

API_VERSION = "2020-05-01"
# The preview version that Service Fabric 7.1 and earlier took: what azure-identity and msal-python still send.
PREVIEW_API_VERSION = "2019-07-01-preview"
SELECTORS: dict[SelectorKind, str] = {"object_id": "principalId"}
_ERROR_CODES = {
    "SecretHeaderNotFound": "secret_header_not_found",
    "ArgumentNullOrEmpty": "invalid_resource",
    "InvalidApiVersion": "invalid_api_version",
    "InternalServerError": "internal_server_error",
}


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    first: list[tuple[str, str]] = []
    if parts.capabilities:
        first.append(("xms_cc", ",".join(parts.capabilities)))
    if parts.token_sha256_to_refresh:
        first.append(("token_sha256_to_refresh", parts.token_sha256_to_refresh))
    params = query_params(SELECTORS, identity, API_VERSION, parts.resource, first=tuple(first))
    return get_request(
        config,
        parts,
        params,
        {"Secret": config.secret or ""},
        pin_sha1=normalise_thumbprint(config.thumbprint or ""),
    )


def read_error(answer: ErrorAnswer) -> ErrorMeaning | None:
    """404 or ManagedIdentityNotFound: the application has no managed identity; its own codes, snake-cased."""
    if answer.status == 404 or answer.code == "ManagedIdentityNotFound":
        return ErrorMeaning(
            "identity_not_found", "has no managed identity for this application", unavailable=True
        )
    if answer.code in _ERROR_CODES:
        return ErrorMeaning(_ERROR_CODES[answer.code])
    return None


SPEC = SourceSpec(
    ManagedIdentitySource.SERVICE_FABRIC,
    SELECTORS,
    build,
    label="Service Fabric managed identity endpoint",
    supports_revocation=True,
    machine_cache=False,
    read_error=read_error,
)
