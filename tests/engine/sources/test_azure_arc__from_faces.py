"""Azure Arc's key file stays secret (from the former test_secrets.py): the agent's echo of it is scrubbed.
Both faces against the emulator."""

from __future__ import annotations

import logging
import os
from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Fault

from ...faces.support import STORAGE


def test_arc_key_echoed_by_the_agent_is_scrubbed(
    face: Any, emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = emulator_factory("azure_arc")
    key = "arc-key-content-that-must-not-leak"
    path = os.path.join(emulator.credential_kwargs["_arc_key_directory"], "echo.key")
    with open(path, "w") as handle:
        handle.write(key)
    emulator.script(
        Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"}),
        Fault(500, {"error": "server_error", "error_description": f"bad key {key}", "correlation_id": key}),
    )
    credential = face.credential(emulator, logging_enable=True, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert emulator.requests[1].headers["authorization"] == f"Basic {key}"
    texts = [record.getMessage() for record in caplog.records] + [str(caught.value), repr(caught.value)]
    assert not [text for text in texts if key in text]
