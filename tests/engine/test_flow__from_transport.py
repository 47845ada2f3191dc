"""Hand-off from tests/transport (the lead folds it into this folder's test_flow.py): what the flow does
across calls: a 429's Retry-After holds every credential of the endpoint, and a refresh beside the callers
that fails is logged without the token. Both faces (the ``face`` fixture), against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Fault

from ..transport.support import SCOPE, Clock, with_a_cached_token


def test_a_429_retry_after_holds_every_credential_of_the_endpoint_until_its_time(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "30"}))
    clock = Clock()
    with pytest.raises(ManagedIdentityError):
        face.credential(emulator, _clock=clock, retry_total=0).get_token(SCOPE)

    hurried = face.credential(emulator, _clock=clock, timeout=10)  # another credential, the same endpoint
    with pytest.raises(ManagedIdentityError) as caught:
        hurried.get_token(SCOPE)
    clock.now += 10
    patient = face.credential(emulator, _clock=clock)
    token = patient.get_token(SCOPE)

    assert caught.value.error_code == "throttled"  # the wait is past its deadline: nothing sent
    assert token.token
    assert face.sleeps == [20.0]  # the patient one waited for the time the endpoint named, then asked
    assert len(emulator.requests) == 2


def test_a_failed_refresh_beside_the_callers_is_logged_without_the_token(
    face: Any, emulator_factory: Any, caplog: Any
) -> None:
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, face.credential, retry_total=0)
    emulator.script(Fault(500))

    clock.now = old.refresh_on + 1
    with caplog.at_level("INFO", logger="msi_credential"):
        credential.get_token(SCOPE)
        credential.settle()

    assert "refreshing the token for https://storage.azure.com failed (internal_server_error)" in caplog.text
    assert old.token not in caplog.text
