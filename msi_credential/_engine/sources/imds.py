"""Azure Instance Metadata Service: VMs, scale sets, AKS nodes, Container Instances."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import RequestParts, SourceSpec, query_params

API_VERSION = "2018-02-01"
SELECTORS: dict[SelectorKind, str] = {
    "client_id": "client_id",
    "object_id": "object_id",
    "resource_id": "msi_res_id",
}


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    return Request(
        "GET",
        config.endpoint,
        params=query_params(SELECTORS, identity, API_VERSION, parts.resource),
        headers={"Metadata": "true"},
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
    )


SPEC = SourceSpec(ManagedIdentitySource.IMDS, SELECTORS, build, retry="imds")
