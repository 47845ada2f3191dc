"""Kubernetes workload identity: a client assertion exchanged at Microsoft Entra (PROTOCOLS.md section 10)."""

from __future__ import annotations

import json

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind
from ._spec import RequestParts, SourceSpec

SELECTORS: dict[SelectorKind, str] = {"client_id": "client_id"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def client_id(config: SourceConfig, identity: Identity) -> str | None:
    return identity.value if identity.kind == "client_id" else config.client_id


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    form = {
        "client_assertion": parts.client_assertion or "",
        "client_assertion_type": ASSERTION_TYPE,
        "client_id": client_id(config, identity) or "",
        "grant_type": "client_credentials",
        "scope": parts.resource + "/.default",
    }
    claims = _merged_claims(parts.claims, parts.capabilities)
    if claims:
        form["claims"] = claims
    return Request(
        "POST",
        config.endpoint,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        form=form,
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
        use_proxies=True,
    )


def _merged_claims(claims: str | None, capabilities: tuple[str, ...]) -> str | None:
    if not capabilities:
        return claims or None
    merged: dict[str, object] = {}
    if claims:
        try:
            loaded = json.loads(claims)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            merged = loaded
    access = merged.get("access_token")
    if not isinstance(access, dict):
        access = {}
    access["xms_cc"] = {"values": list(capabilities)}
    merged["access_token"] = access
    return json.dumps(merged, separators=(",", ":"))


SPEC = SourceSpec(ManagedIdentitySource.WORKLOAD_IDENTITY, SELECTORS, build, reads_assertion=True)
