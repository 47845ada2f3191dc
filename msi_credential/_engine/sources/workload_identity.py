"""Kubernetes workload identity: a client assertion exchanged at Microsoft Entra (docs/protocols.md section 10).

POST ``{AZURE_AUTHORITY_HOST}/{AZURE_TENANT_ID}/oauth2/v2.0/token`` with a client credentials form whose
``client_assertion`` is the federated token file's contents (stripped). The engine asks its driver to read that file
(a ``ReadAssertion`` effect) for every token request, retries included, and keeps nothing: the file rotates, and
reading it each time satisfies "re-read when its mtime/size changes and at least every 600 s" without any stat
bookkeeping. A missing, unreadable, empty or oversized file is failed ``federated_token_file_unreadable``.

The assertion is a secret: it travels only in the form body (never in a URL, header or log record) and the engine
scrubs it from any error text the server echoes. Only ``client_id`` selects an identity (``object_id`` and
``resource_id`` are failed ``user_assigned_not_supported``); without it ``AZURE_CLIENT_ID`` is used, and neither is
failed ``missing_client_id``, both before any request. Entra's errors are all failed, never unavailable, and
408, 429, 500, 502, 503, 504 and connection errors are retried on the standard schedule (section 7).

Client capabilities and ``claims=`` travel merged in the form's ``claims``. The machine cache never serves it: the
token follows the federated token file that each pod (each process) reads for itself.
"""

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


def check(config: SourceConfig, identity: Identity) -> tuple[str, str] | None:
    if client_id(config, identity):
        return None
    return (
        "missing_client_id",
        "workload identity needs a client id: pass client_id= or set AZURE_CLIENT_ID",
    )


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
    # Extra identity_config keys join the form; they never override what the engine sets (section 2), and
    # "claims" is the engine's alone: sent only with a challenge or client capabilities.
    for key, value in identity.extra:
        if key not in form and key != "claims":
            form[key] = value
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


SPEC = SourceSpec(
    ManagedIdentitySource.WORKLOAD_IDENTITY,
    SELECTORS,
    build,
    label="Microsoft Entra token endpoint",
    reads_assertion=True,
    client_id=client_id,
    check=check,
    machine_cache=False,
)
