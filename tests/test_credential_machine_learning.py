"""Azure Machine Learning through the public credential, both faces, against the emulator."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential.emulator import Fault


def test_machine_learning_system_assigned_sends_default_client_id(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("machine_learning", default_client_id="ffffffff-0000-0000-0000-000000000000")
    credential = face.credential(emulator)

    credential.get_token("https://storage.azure.com/.default")

    assert emulator.requests[0].query["clientid"] == "ffffffff-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    "expires_on",
    [
        "06/20/2049 02:57:58 +00:00",
        "1/16/2049 5:24:12 AM +00:00",
        "2049-10-18T19:51:37.0000000+00:00",
    ],
)
def test_machine_learning_reads_date_expiry_forms(face: Any, emulator_factory: Any, expires_on: str) -> None:
    # Far-future dates fail the 7-day lifetime rule, so use a fixed clock just before them.
    emulator = emulator_factory("machine_learning")
    from msi_credential._engine.expiry import parse_expires_on

    expiry = parse_expires_on(expires_on)
    assert expiry is not None
    emulator.script(Fault(200, {"access_token": "opaque-token-value", "expires_on": expires_on}))
    credential = face.credential(emulator, _clock=lambda: float(expiry - 3600))

    token = credential.get_token("https://storage.azure.com/.default")

    assert token.expires_on == expiry
