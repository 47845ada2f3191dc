"""Hand-off from tests/transport (the lead folds it into this folder's test_scopes.py): a scope's fragment
reaches the endpoint as part of the resource, with the identity. Both faces (the ``face`` fixture), against
the emulator."""

from __future__ import annotations

from typing import Any

from msi_credential.emulator import UserAssignedIdentity

from ..transport.support import CLIENT_A


def test_a_fragment_in_a_scope_reaches_the_emulator_as_the_resource_with_the_identity(
    face: Any, emulator_factory: Any
) -> None:
    """The emulator sees the whole resource and the client id: no fallback to the system-assigned identity."""
    emulator = emulator_factory("imds", identities=[UserAssignedIdentity(CLIENT_A, "object-a", "/sub/a")])
    credential = face.credential(emulator, client_id=CLIENT_A)

    credential.get_token("https://vault.azure.net#/.default")

    (request,) = emulator.requests
    assert request.query["resource"] == "https://vault.azure.net#"
    assert request.query["client_id"] == CLIENT_A
