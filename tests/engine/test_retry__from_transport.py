"""Hand-off from tests/transport (the lead folds it into this folder's test_retry.py): the retry schedule as
the credential's keywords and a Retry-After shape it. Both faces (the ``face`` fixture), against the
emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Fault

from ..transport.support import SCOPE


def test_retry_after_over_a_minute_stops_retrying(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "120"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.status_code == 429
    assert face.sleeps == []


def test_retry_keywords_adjust_the_schedule(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(*[Fault(503)] * 5)
    credential = face.credential(emulator, retry_total=5, retry_backoff_factor=0.5, retry_backoff_max=3)

    credential.get_token(SCOPE)

    assert face.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
