"""Hand-off from tests/transport (the lead folds it into this folder's test_azure_arc.py): Azure Arc's key
file rules as the credential meets them: a key with non-ASCII or control characters is
``arc_invalid_key_file``, never sent and never quoted. Both faces (the ``face`` fixture), against a loopback
server or the emulator."""

from __future__ import annotations

import os
from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Fault

from ...transport import support
from ...transport.support import (
    SCOPE,
    assert_secret_absent,
    http_answer,
)

capturing_server = support.capturing_server  # the fixture


def test_a_non_ascii_arc_key_is_arc_invalid_key_file_without_the_key(
    face: Any,
    capturing_server: Any,
    tmp_path: Any,
) -> None:
    key = "cl\u00e9-secr\u00e8te-\u2603"
    key_file = tmp_path / "agent.key"
    key_file.write_bytes(key.encode("utf-8"))
    challenge = {"WWW-Authenticate": f"Basic realm={key_file}"}
    server = capturing_server(lambda head: http_answer({"error": "unauthorized"}, 401, challenge))
    environ = {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{server.port}/metadata/identity/oauth2/token",
        "IMDS_ENDPOINT": f"http://127.0.0.1:{server.port}",
    }
    credential = face.credential(_environ=environ, _arc_key_directory=str(tmp_path))

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert len(server.raw) == 1  # the challenge only: the key was never sent
    assert_secret_absent(caught.value, key)


def test_arc_key_with_control_characters_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    path = os.path.join(emulator.credential_kwargs["_arc_key_directory"], "bad.key")
    with open(path, "w") as handle:
        handle.write("key-part-one\nkey-part-two")
    emulator.script(Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert "key-part" not in str(caught.value)
    assert len(emulator.requests) == 1
