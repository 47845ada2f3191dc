"""Azure Instance Metadata Service: VMs, scale sets, AKS nodes, Container Instances.

Off Azure there is no IMDS: inside a credential chain, until its endpoint first answers in this process, a
connection failure is ``imds_unreachable`` at once (a 1 s connect timeout, no retries); on its own, after the normal
timeouts and retries. An answer that is not JSON is not IMDS (docs/protocols.md section 7). AKS pod identity
(AZURE_POD_IDENTITY_AUTHORITY_HOST) speaks the same protocol but is there when configured, so it does not fail fast.
"""

from __future__ import annotations

import re

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import Absence, ErrorAnswer, ErrorMeaning, RequestParts, SourceSpec, get_request, query_params

API_VERSION = "2018-02-01"
SELECTORS: dict[SelectorKind, str] = {
    "client_id": "client_id",
    "object_id": "object_id",
    "resource_id": "msi_res_id",
}
_RESOURCE_NOT_FOUND = re.compile(r"\bAADSTS(500011|50001)\b")


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    params = query_params(SELECTORS, identity, API_VERSION, parts.resource)
    return get_request(config, parts, params, {"Metadata": "true"})


def read_error(answer: ErrorAnswer) -> ErrorMeaning | None:
    """403 "unreachable" (Docker Desktop and some proxies), and 400: a bad resource, else no such identity."""
    if answer.status == 403 and "unreachable" in answer.description.lower():
        return ErrorMeaning("imds_unreachable", "is unreachable from this host", unavailable=True)
    if answer.status == 400:
        text = f"{answer.code or ''} {answer.description}"
        if answer.code == "invalid_resource" or _RESOURCE_NOT_FOUND.search(text):
            return ErrorMeaning("invalid_resource", "refused the resource")
        return ErrorMeaning(
            "identity_not_found", "has no such identity assigned (identity not found)", unavailable=True
        )
    return None


def fails_fast(config: SourceConfig) -> bool:
    return not config.pod_identity


SPEC = SourceSpec(
    ManagedIdentitySource.IMDS,
    SELECTORS,
    build,
    label="IMDS",
    retry="imds",
    absence=Absence(code="imds_unreachable", first_connect_timeout=1.0, fails_fast=fails_fast),
    read_error=read_error,
)
