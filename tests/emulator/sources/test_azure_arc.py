"""msi_credential/emulator/sources/azure_arc.py: the Arc agent's challenge and its key files (written, accepted once,
retired, bounded, removed), the selector echoed, and the key directory made and left as the agent does."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path
from typing import Any

import pytest

from msi_credential.emulator import Emulator, EmulatorSetupError, Fault, decode_jwt

from ..http_calls import IDENTITY, RESOURCE, arc_keys, call, realm, token_request, verified_call


def test_arc_challenge_writes_a_key_file_and_accepts_it_once(emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    directory = emulator.credential_kwargs["_arc_key_directory"]
    query = {"api-version": "2020-06-01", "resource": RESOURCE}

    challenge = call(emulator, query=query, headers={"Metadata": "true"})

    assert challenge.status == 401
    path = realm(challenge)
    assert os.path.isabs(path)
    assert os.path.dirname(path) == directory
    assert path.endswith(".key")
    key = Path(path).read_text()
    assert len(key) == 64 and int(key, 16) >= 0

    answer = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert answer.status == 200
    assert decode_jwt(answer.json()["access_token"])["aud"] == RESOURCE

    replay = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert replay.status == 401
    assert realm(replay) != path
    assert [r.headers.get("authorization", "").startswith("Basic ") for r in emulator.requests] == [
        False,
        True,
        True,
    ]


def test_arc_key_file_is_deleted_once_its_challenge_is_answered(emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")

    for _ in range(20):
        assert token_request(emulator).status == 200  # a challenge, then the answer with its key

    assert arc_keys(emulator) == []
    assert emulator.tokens_issued == 20


def test_arc_key_files_stay_bounded_however_many_challenges_go_unanswered(emulator_factory: Any) -> None:
    from msi_credential.emulator.sources.azure_arc import MAX_ARC_KEYS

    emulator = emulator_factory("azure_arc")
    query = {"api-version": "2020-06-01", "resource": RESOURCE}

    challenges = [call(emulator, query=query, headers={"Metadata": "true"}) for _ in range(3 * MAX_ARC_KEYS)]

    newest = [os.path.basename(realm(answer)) for answer in challenges[-MAX_ARC_KEYS:]]
    assert arc_keys(emulator) == sorted(newest)  # the oldest were retired, files and keys
    key = Path(realm(challenges[-1])).read_text()
    answer = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert answer.status == 200
    retired = Path(realm(challenges[0])).name
    assert retired not in arc_keys(emulator)


def test_arc_expired_key_files_are_deleted(emulator_factory: Any) -> None:
    from msi_credential.emulator.sources.azure_arc import ARC_KEY_VALIDITY

    now = [1_700_000_000.0]
    emulator = emulator_factory("azure_arc", clock=lambda: now[0])
    query = {"api-version": "2020-06-01", "resource": RESOURCE}
    first = call(emulator, query=query, headers={"Metadata": "true"})
    key = Path(realm(first)).read_text()

    now[0] += ARC_KEY_VALIDITY
    second = call(emulator, query=query, headers={"Metadata": "true"})

    assert arc_keys(emulator) == [Path(realm(second)).name]
    late = call(emulator, query=query, headers={"Metadata": "true", "Authorization": f"Basic {key}"})
    assert late.status == 401  # expired, and its file is gone


def test_arc_refuses_a_key_it_did_not_issue(emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    query = {"api-version": "2020-06-01", "resource": RESOURCE}

    answer = call(emulator, query=query, headers={"Metadata": "true", "Authorization": "Basic " + "0" * 64})

    assert answer.status == 401
    assert Path(realm(answer)).is_file()
    assert emulator.tokens_issued == 0


@pytest.mark.parametrize(
    ("wire_name", "attribute"),
    [("client_id", "client_id"), ("object_id", "object_id"), ("msi_res_id", "resource_id")],
)
def test_arc_echoes_the_requested_selector(emulator_factory: Any, wire_name: str, attribute: str) -> None:
    emulator = emulator_factory("azure_arc", identities=[IDENTITY])

    answer = token_request(emulator, **{wire_name: getattr(IDENTITY, attribute)})

    body = answer.json()
    assert body[wire_name] == getattr(IDENTITY, attribute)
    assert decode_jwt(body["access_token"])["oid"] == IDENTITY.object_id
    assert {"client_id", "object_id", "msi_res_id"} & set(body) == {wire_name}


def test_arc_key_files_are_removed_on_stop_from_a_given_directory(tmp_path: Path) -> None:
    mine = tmp_path / "mine.txt"
    mine.write_text("keep me")
    emulator = Emulator("azure_arc", arc_key_directory=str(tmp_path)).start()
    try:
        assert emulator.credential_kwargs == {"_arc_key_directory": str(tmp_path)}
        challenge = call(
            emulator, query={"api-version": "2020-06-01", "resource": RESOURCE}, headers={"Metadata": "true"}
        )
        assert Path(realm(challenge)).is_file()
    finally:
        emulator.stop()

    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_arc_scripted_fault_consumes_a_request_at_any_step(emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    emulator.script(Fault(503))

    faulted = call(
        emulator, query={"api-version": "2020-06-01", "resource": RESOURCE}, headers={"Metadata": "true"}
    )
    answer = token_request(emulator)

    assert faulted.status == 503
    assert answer.status == 200
    assert len(emulator.requests) == 3


# ---------------------------------------------------------------------------------------------- the key directory


def test_arc_creates_a_missing_key_directory_like_the_agent_and_removes_only_what_it_made(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "var" / "opt" / "azcmagent" / "tokens"
    with Emulator("azure_arc", arc_key_directory=str(directory)) as emulator:
        assert emulator.key_directory == str(directory)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o770
        status, _ = verified_call(
            emulator,
            "/metadata/identity/oauth2/token",
            {"api-version": "2020-06-01", "resource": RESOURCE},
            {"Metadata": "true"},
        )
        assert status == 401
        [key_file] = list(directory.glob("*.key"))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o640
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # every directory it made is gone


def test_arc_keeps_an_existing_key_directory_and_what_others_put_there(tmp_path: Path) -> None:
    foreign = tmp_path / f"{uuid.uuid4()}.key"
    foreign.write_text("someone else's")
    with Emulator("azure_arc", arc_key_directory=str(tmp_path)) as emulator:
        verified_call(
            emulator,
            "/metadata/identity/oauth2/token",
            {"api-version": "2020-06-01", "resource": RESOURCE},
            {"Metadata": "true"},
        )
        assert len(list(tmp_path.glob("*.key"))) == 2
    assert [path.name for path in tmp_path.iterdir()] == [foreign.name]


def test_arc_key_directory_it_may_not_write_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    directory = blocker / "tokens"
    emulator = Emulator("azure_arc", arc_key_directory=str(directory))

    with pytest.raises(EmulatorSetupError) as raised:
        emulator.start()

    message = str(raised.value)
    assert f"cannot write Azure Arc key files in {directory}" in message
    assert "run the emulator with the rights to write there" in message
    assert "(Not a directory)" in message
    assert "_arc_key_directory" not in message.replace(str(directory), "")  # no private keyword as the way in
