"""What a source module declares: data plus one small pure function that builds its request."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Callable, Literal, Optional

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity, SelectorKind


@dataclass(frozen=True)
class RequestParts:
    """Per-call inputs of a request besides config and identity."""

    resource: str
    connect_timeout: float
    read_timeout: float
    capabilities: tuple[str, ...] = ()
    token_sha256_to_refresh: Optional[str] = None
    claims: Optional[str] = None
    client_assertion: Optional[str] = None


@dataclass(frozen=True)
class SourceSpec:
    """A hosting environment's protocol, as data."""

    source: ManagedIdentitySource
    # user-assigned selectors the endpoint takes, with their wire names; an absent kind is refused
    selectors: Mapping[SelectorKind, str]
    build: Callable[[SourceConfig, Identity, RequestParts], Request]
    retry: Literal["imds", "standard"] = "standard"
    supports_revocation: bool = False
    challenge: bool = False
    reads_assertion: bool = False


def query_params(
    spec_selectors: Mapping[SelectorKind, str],
    identity: Identity,
    api_version: str,
    resource: str,
    *,
    first: tuple[tuple[str, str], ...] = (),
) -> tuple[tuple[str, str], ...]:
    """api-version, resource, the identity selector under its wire name, then extra identity_config keys."""
    params: list[tuple[str, str]] = [("api-version", api_version), ("resource", resource), *first]
    if identity.value is not None:
        params.append((spec_selectors[identity.kind], identity.value))
    taken = {name for name, _ in params}
    params.extend((key, value) for key, value in identity.extra if key not in taken)
    return tuple(params)
