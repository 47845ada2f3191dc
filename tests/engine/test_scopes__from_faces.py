"""msi_credential/_engine/scopes.py through both faces (from the former test_credential_common.py): bad scopes
are ValueErrors before any request, and a scope without /.default is the resource."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(
    "scopes",
    [(), ("a", "b"), ("",), ("   ",), ("/.default",), ("https://x/.default\n",), ("https://x y",)],
)
def test_bad_scopes_are_value_errors(face: Any, emulator_factory: Any, scopes: tuple[str, ...]) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    with pytest.raises(ValueError):
        credential.get_token(*scopes)
    with pytest.raises(ValueError):
        credential.get_token_info(*scopes)
    assert emulator.requests == []


def test_scope_without_default_suffix_is_the_resource(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    credential.get_token("https://management.azure.com")
    credential.get_token("api://my-app/.default")

    assert [r.query["resource"] for r in emulator.requests] == [
        "https://management.azure.com",
        "api://my-app",
    ]
