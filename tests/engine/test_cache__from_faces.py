"""msi_credential/_engine/cache.py through both faces (from the former test_credential_common.py): the
process-wide cache one identity's credentials share, and errors that are not cached."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import CredentialUnavailableError
from msi_credential.emulator import Fault

from ..faces.support import STORAGE


def test_credentials_of_one_identity_share_the_process_cache(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")

    tokens = {face.credential(emulator, share_cache=True).get_token(STORAGE).token for _ in range(5)}
    private = face.credential(emulator, share_cache=False).get_token(STORAGE).token

    assert len(tokens) == 1
    assert private not in tokens
    assert emulator.tokens_issued == 2


def test_errors_are_not_cached_and_the_credential_stays_usable(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(400, {"error": "invalid_request", "error_description": "Identity not found"}))
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError):
        credential.get_token(STORAGE)
    assert credential.get_token(STORAGE).token
