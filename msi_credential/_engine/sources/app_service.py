"""App Service, Azure Functions and Container Apps (api-version 2019-08-01)."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import ErrorAnswer, ErrorMeaning, RequestParts, SourceSpec, get_request, query_params

API_VERSION = "2019-08-01"
SELECTORS: dict[SelectorKind, str] = {
    "client_id": "client_id",
    "object_id": "object_id",
    "resource_id": "mi_res_id",
}


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    params = query_params(SELECTORS, identity, API_VERSION, parts.resource)
    return get_request(config, parts, params, {"X-IDENTITY-HEADER": config.secret or ""})


def read_error(answer: ErrorAnswer) -> ErrorMeaning | None:
    """400 naming the managed identity: the app has no such identity (unavailable, like IMDS's)."""
    if answer.status == 400 and "managed identity" in answer.description.lower():
        return ErrorMeaning("identity_not_found", "could not load the managed identity", unavailable=True)
    return None


SPEC = SourceSpec(
    ManagedIdentitySource.APP_SERVICE,
    SELECTORS,
    build,
    label="App Service managed identity endpoint",
    read_error=read_error,
)
