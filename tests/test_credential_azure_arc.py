"""Azure Arc through the public credential, both faces: the 401 challenge, the key file checks, the echo rule."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential.emulator import Fault, UserAssignedIdentity

ARM = "https://management.azure.com/.default"
IDENTITY = UserAssignedIdentity(
    client_id="12121212-1111-1111-1111-111111111111",
    object_id="34343434-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/r",
)


def challenge(path: str) -> Fault:
    return Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"})


def test_arc_answers_the_challenge_with_the_key_file(face: Any, emulator_factory: Any) -> None:
    # What both requests share: test_credential_sources.py::test_source_returns_a_token_for_the_audience_and_sends_its_exact_request
    emulator = emulator_factory("azure_arc")
    credential = face.credential(emulator)

    credential.get_token(ARM)

    first, second = emulator.requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"].startswith("Basic ")


def test_arc_is_detected_by_the_himds_file(face: Any) -> None:
    credential = face.credential(_environ={}, _path_exists=lambda path: path == "/opt/azcmagent/bin/himds")

    assert credential.source is ManagedIdentitySource.AZURE_ARC


def _key_file(directory: str, name: str = "token.key", content: str = "k" * 64) -> str:
    path = os.path.join(directory, name)
    Path(path).write_text(content)
    return path


def test_arc_discards_a_token_that_does_not_confirm_the_identity(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc", identities=[IDENTITY])
    key = _key_file(emulator.credential_kwargs["_arc_key_directory"])
    body = {"access_token": "system-identity-token", "expires_in": 3600, "client_id": "someone-else"}
    emulator.script(challenge(key), Fault(200, body))
    credential = face.credential(emulator, client_id=IDENTITY.client_id)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(ARM)

    assert caught.value.error_code == "arc_identity_not_confirmed"
    assert "system-identity-token" not in str(caught.value)


def test_arc_second_401_is_a_rejection_not_a_loop(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    key = _key_file(emulator.credential_kwargs["_arc_key_directory"], content="secret-key-content-0001")
    emulator.script(challenge(key))  # the emulator then refuses a key it did not issue
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(ARM)

    assert caught.value.error_code == "arc_challenge_rejected"
    assert len(emulator.requests) == 2
    assert "secret-key-content-0001" not in str(caught.value)


def test_arc_challenge_without_header_fails(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    emulator.script(Fault(401, b""))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(ARM)

    assert caught.value.error_code == "arc_challenge_missing"


@pytest.mark.parametrize("header", ["Bearer realm=/x.key", "Basic realm=", "Basic", "Digest x"])
def test_arc_malformed_challenge_fails(face: Any, emulator_factory: Any, header: str) -> None:
    emulator = emulator_factory("azure_arc")
    emulator.script(Fault(401, b"", {"WWW-Authenticate": header}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(ARM)

    assert caught.value.error_code in ("arc_challenge_invalid", "arc_challenge_missing")


# Each case makes the key path the challenge names, from the token directory and a directory outside it.
REFUSED_KEY_PATHS: dict[str, Callable[[str, str], str]] = {
    "outside-the-token-directory": lambda directory, outside: _key_file(outside),
    "extension-txt": lambda directory, outside: _key_file(directory, name="token.txt"),
    "no-extension": lambda directory, outside: _key_file(directory, name="token"),
    "only-the-extension": lambda directory, outside: _key_file(directory, name=".key"),
    "dot-dot": lambda directory, outside: f"{directory}/../{os.path.basename(directory)}/x.key",
    "over-4096-bytes": lambda directory, outside: _key_file(directory, content="x" * 4097),
}


@pytest.mark.parametrize("make_path", REFUSED_KEY_PATHS.values(), ids=REFUSED_KEY_PATHS.keys())
def test_arc_refuses_a_key_file_outside_the_rules_without_answering_the_challenge(
    face: Any, emulator_factory: Any, tmp_path: Path, make_path: Callable[[str, str], str]
) -> None:
    emulator = emulator_factory("azure_arc")
    emulator.script(challenge(make_path(emulator.credential_kwargs["_arc_key_directory"], str(tmp_path))))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(ARM)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert len(emulator.requests) == 1


def test_arc_accepts_key_file_of_exactly_4096_bytes(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    path = _key_file(emulator.credential_kwargs["_arc_key_directory"], content="y" * 4096)
    body = {"access_token": "opaque", "expires_in": 3600}
    emulator.script(challenge(path), Fault(200, body))
    credential = face.credential(emulator)

    assert credential.get_token(ARM).token == "opaque"
    assert emulator.requests[1].headers["authorization"] == "Basic " + "y" * 4096


def test_arc_rejects_symlinked_and_missing_key_files(
    face: Any, emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = emulator_factory("azure_arc")
    directory = emulator.credential_kwargs["_arc_key_directory"]
    target = _key_file(str(tmp_path), content="linked-secret")
    link = os.path.join(directory, "link.key")
    os.symlink(target, link)
    emulator.script(challenge(link), challenge(os.path.join(directory, "missing.key")))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as linked:
        credential.get_token(ARM)
    with pytest.raises(ManagedIdentityError) as missing:
        credential.get_token(ARM)

    assert linked.value.error_code == "arc_invalid_key_file"
    assert missing.value.error_code == "arc_key_file_unreadable"


def test_arc_on_an_unsupported_platform_fails(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    credential = face.credential(emulator, _platform="darwin")

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(ARM)

    assert caught.value.error_code == "arc_platform_unsupported"


def test_arc_key_is_read_for_every_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    credential = face.credential(emulator)

    credential.get_token(ARM)
    credential.get_token("https://vault.azure.net/.default")

    keys = [r.headers["authorization"] for r in emulator.requests if "authorization" in r.headers]
    assert len(keys) == 2 and keys[0] != keys[1]
