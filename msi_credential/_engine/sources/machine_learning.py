"""Azure Machine Learning compute (api-version 2017-09-01): user-assigned by client id only, as ``clientid``."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import RequestParts, SourceSpec, get_request, query_params

API_VERSION = "2017-09-01"
SELECTORS: dict[SelectorKind, str] = {"client_id": "clientid"}


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    first: tuple[tuple[str, str], ...] = ()
    if identity.value is None and config.default_client_id:
        first = (("clientid", config.default_client_id),)
    params = query_params(SELECTORS, identity, API_VERSION, parts.resource, first=first)
    return get_request(config, parts, params, {"secret": config.secret or "", "Metadata": "true"})


SPEC = SourceSpec(
    ManagedIdentitySource.MACHINE_LEARNING,
    SELECTORS,
    build,
    label="Azure Machine Learning managed identity endpoint",
)
