"""Azure Arc-enabled servers: the himds agent, with its 401 challenge and key file (docs/protocols.md section 5)."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import RequestParts, SourceSpec, query_params

API_VERSION = "2020-06-01"
SELECTORS: dict[SelectorKind, str] = {
    "client_id": "client_id",
    "object_id": "object_id",
    "resource_id": "msi_res_id",
}
# The answer must echo the requested selector under one of these names (old agents return the system identity).
ECHO_NAMES: dict[SelectorKind, tuple[str, ...]] = {
    "client_id": ("client_id",),
    "object_id": ("object_id",),
    "resource_id": ("msi_res_id", "mi_res_id"),
}


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    """The first, secret-less request; the flow adds ``Authorization`` after the challenge."""
    return Request(
        "GET",
        config.endpoint,
        params=query_params(SELECTORS, identity, API_VERSION, parts.resource),
        headers={"Metadata": "true"},
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
    )


SPEC = SourceSpec(ManagedIdentitySource.AZURE_ARC, SELECTORS, build, challenge=True)
