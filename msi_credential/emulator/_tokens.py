"""Compact HS256 JWTs shaped like Entra ID v1 access tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from typing import Any

__all__ = ["decode_jwt", "entra_v1_claims", "mint_jwt"]


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _compact_json(value: Mapping[str, Any]) -> bytes:
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=True).encode("utf-8")


def mint_jwt(claims: Mapping[str, Any], key: bytes) -> str:
    """Sign ``claims`` as an HS256 JWT (base64url segments, no padding)."""
    signing_input = (
        _b64url(_compact_json({"alg": "HS256", "typ": "JWT"})) + "." + _b64url(_compact_json(claims))
    )
    signature = hmac.new(key, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + _b64url(signature)


def decode_jwt(token: str) -> dict[str, Any]:
    """The payload of a JWT, without checking its signature; ``ValueError`` if it is not one."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a JWT: expected three dot-separated segments")
    try:
        payload = json.loads(_b64url_decode(parts[1]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("not a JWT: the payload is not base64url JSON") from exc
    if not isinstance(payload, dict):
        raise ValueError("not a JWT: the payload is not a JSON object")
    return payload


def entra_v1_claims(
    *,
    resource: str,
    tenant_id: str,
    client_id: str,
    object_id: str,
    resource_id: str,
    now: int,
    lifetime: int,
) -> dict[str, Any]:
    """The claims of an Entra ID v1 managed identity access token issued at ``now``."""
    claims: dict[str, Any] = {
        "aud": resource,
        "iss": f"https://sts.windows.net/{tenant_id}/",
        "iat": now - 60,
        "nbf": now - 60,
        "exp": now + lifetime,
        "oid": object_id,
        "sub": object_id,
        "tid": tenant_id,
        "appid": client_id,
        "appidacr": "2",
        "idtyp": "app",
        "ver": "1.0",
        "uti": secrets.token_urlsafe(16),
    }
    if resource_id:
        claims["xms_mirid"] = resource_id
    return claims
