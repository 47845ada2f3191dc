"""Azure Machine Learning compute (api-version 2017-09-01): user-assigned by client id only, as ``clientid``."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import RequestParts, SourceSpec, query_params

API_VERSION = "2017-09-01"
SELECTORS: dict[SelectorKind, str] = {"client_id": "clientid"}


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    first: tuple[tuple[str, str], ...] = ()
    if identity.value is None and config.default_client_id:
        first = (("clientid", config.default_client_id),)
    return Request(
        "GET",
        config.endpoint,
        params=query_params(SELECTORS, identity, API_VERSION, parts.resource, first=first),
        headers={"secret": config.secret or "", "Metadata": "true"},
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
    )


SPEC = SourceSpec(ManagedIdentitySource.MACHINE_LEARNING, SELECTORS, build)
