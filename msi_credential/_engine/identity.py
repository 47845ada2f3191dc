"""Which identity to ask for: system-assigned, or one user-assigned identity by one selector."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Optional

from .record import Record, field

SelectorKind = Literal["system", "client_id", "object_id", "resource_id"]

# identity_config keys that name the identity, with the selector each means. The *_res_id spellings are the
# wire names azure-identity users put in identity_config for IMDS and App Service.
_CONFIG_SELECTORS: dict[str, SelectorKind] = {
    "client_id": "client_id",
    "object_id": "object_id",
    "resource_id": "resource_id",
    "msi_res_id": "resource_id",
    "mi_res_id": "resource_id",
}


class Identity(Record):
    """The identity a credential asks for. ``extra`` holds identity_config keys sent as extra parameters."""

    kind: SelectorKind = "system"
    value: Optional[str] = None
    extra: tuple[tuple[str, str], ...] = field(default=())

    @property
    def user_assigned(self) -> bool:
        return self.kind != "system"

    @property
    def cache_value(self) -> str:
        """The selector value as the cache keys it (ids compare case-insensitively)."""
        return (self.value or "").lower()

    def describe(self) -> str:
        return "system-assigned identity" if self.value is None else f"identity with {self.kind}"


def identity_from_arguments(
    *,
    client_id: Optional[str] = None,
    object_id: Optional[str] = None,
    resource_id: Optional[str] = None,
    identity_config: Optional[Mapping[str, Any]] = None,
) -> Identity:
    """Check the constructor's identity arguments; at most one selector in all (ValueError otherwise)."""
    chosen: list[tuple[SelectorKind, str, str]] = []
    for name, value in (
        ("client_id", client_id),
        ("object_id", object_id),
        ("resource_id", resource_id),
    ):
        if value is not None:
            chosen.append((_CONFIG_SELECTORS[name], _checked_value(name, value), name))
    extra: list[tuple[str, str]] = []
    if identity_config is not None:
        if not isinstance(identity_config, Mapping):
            raise ValueError("identity_config must be a mapping of parameter names to strings")
        for key, value in identity_config.items():
            if not isinstance(key, str) or not key:
                raise ValueError("identity_config keys must be non-empty strings")
            if value is None:
                continue
            checked = _checked_value(f"identity_config[{key!r}]", value)
            kind = _CONFIG_SELECTORS.get(key)
            if kind is None:
                extra.append((key, checked))
            else:
                chosen.append((kind, checked, f"identity_config[{key!r}]"))
    if len(chosen) > 1:
        names = ", ".join(name for _, _, name in chosen)
        raise ValueError(
            f"specify at most one of client_id, object_id and resource_id (got {names}); "
            "a credential has one identity"
        )
    if not chosen:
        return Identity(extra=tuple(extra))
    kind, value, _ = chosen[0]
    return Identity(kind=kind, value=value, extra=tuple(extra))


def _checked_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    stripped = value.strip()
    if not stripped or not stripped.isprintable():
        raise ValueError(f"{name} must be a non-empty string without control characters")
    return stripped
