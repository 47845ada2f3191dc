"""Service Fabric: HTTPS to a pinned certificate (docs/protocols.md section 6); runtime ids are refused."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig, normalise_thumbprint
from ..effects import Request
from ..identity import Identity
from ._spec import RequestParts, SourceSpec, query_params

API_VERSION = "2019-07-01-preview"


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    first: list[tuple[str, str]] = []
    if parts.capabilities:
        first.append(("xms_cc", ",".join(parts.capabilities)))
    if parts.token_sha256_to_refresh:
        first.append(("token_sha256_to_refresh", parts.token_sha256_to_refresh))
    return Request(
        "GET",
        config.endpoint,
        params=query_params({}, identity, API_VERSION, parts.resource, first=tuple(first)),
        headers={"Secret": config.secret or ""},
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
        pin_sha1=normalise_thumbprint(config.thumbprint or ""),
    )


SPEC = SourceSpec(ManagedIdentitySource.SERVICE_FABRIC, {}, build, supports_revocation=True)
