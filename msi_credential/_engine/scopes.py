"""Scopes in, a resource out."""

from __future__ import annotations

_DEFAULT_SUFFIX = "/.default"


def resource_from_scopes(scopes: tuple[str, ...]) -> str:
    """The resource a managed identity endpoint expects: the one scope, less a trailing ``/.default``.

    Raises ValueError for zero or several scopes, a non-string, or an empty, whitespace or control-character scope.
    """
    if len(scopes) != 1:
        raise ValueError(
            f"managed identity takes exactly one scope, got {len(scopes)}; call get_token once per resource"
        )
    scope = scopes[0]
    if not isinstance(scope, str):
        raise ValueError(f"a scope must be a string, not {type(scope).__name__}")
    resource = scope[: -len(_DEFAULT_SUFFIX)] if scope.endswith(_DEFAULT_SUFFIX) else scope
    if resource.endswith(_DEFAULT_SUFFIX):
        raise ValueError("a scope may end with '/.default' once, not twice")
    if not resource or not resource.isprintable() or any(ch.isspace() for ch in resource):
        raise ValueError(
            "a scope must be a non-empty resource or '<resource>/.default' without whitespace "
            "or control characters"
        )
    return resource
