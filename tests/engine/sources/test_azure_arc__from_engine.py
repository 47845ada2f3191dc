"""Hand-off from the engine helper (issue 27), to fold into test_azure_arc.py of this folder: Azure Arc's challenge,
key file and identity echo (``sources/azure_arc.py``), through the scripted driver of tests/engine/scripted.py or
its functions. A comment above a test names the one-line change that it catches.

Moved from test_engine_flow.py, test_mutation_guards.py and test_engine_messages_and_edges.py (the tests folder's
root, before issue 27).
"""

from __future__ import annotations

from typing import Any, Optional

import pytest

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.detection import SourceConfig
from msi_credential._engine.effects import KeyFileResult, Response
from msi_credential._engine.identity import Identity
from msi_credential._engine.sources import azure_arc
from msi_credential._engine.sources.azure_arc import key_file_named, valid_key_path

from ..scripted import ARC, Clock, Script, check_error, engine, error_fields, failure, raised, token_response

RESOURCE = "https://storage.azure.com"
LINUX_KEYS = "/var/opt/azcmagent/tokens"  # the agent's key directory on Linux
WINDOWS_KEYS = "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens"  # the agent's key directory on Windows


def _arc(tmp_path: Any, platform: str = "linux", **kwargs: Any) -> tuple[Any, Script]:
    clock = Clock()
    return engine(ARC, clock, _platform=platform, _arc_key_directory=str(tmp_path), **kwargs), Script(clock)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "arc_challenge_missing"),
        ("   ", "arc_challenge_missing"),
        ("Bearer realm=/x/agent.key", "arc_challenge_invalid"),
        ("Basic realm=", "arc_challenge_invalid"),
        ('Basic realm=""', "arc_challenge_invalid"),
        ("Basic realm=/elsewhere/agent.key", "arc_invalid_key_file"),
        ("Basic realm={dir}/agent.txt", "arc_invalid_key_file"),
        ("Basic realm={dir}/../agent.key", "arc_invalid_key_file"),
        ("Basic realm={dir}/" + "a" * 65_536 + ".key", "arc_challenge_invalid"),  # over the size bound
    ],
)
def test_arc_refuses_a_bad_challenge_before_reading_any_file(
    tmp_path: Any, header: Optional[str], code: str
) -> None:
    credential_engine, script = _arc(tmp_path)
    headers = {} if header is None else {"www-authenticate": header.format(dir=tmp_path)}
    script.queue(Response(401, headers, b""))

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, code, ManagedIdentitySource.AZURE_ARC, status=401)
    assert script.reads == [] and len(script.sent) == 1


@pytest.mark.parametrize("header", ['basic REALM="{dir}/agent.key"', "  Basic realm= {dir}/agent.key  "])
def test_arc_challenge_prefix_is_case_insensitive_and_the_path_may_be_quoted(
    tmp_path: Any, header: str
) -> None:
    credential_engine, script = _arc(tmp_path)
    script.queue(
        Response(401, {"www-authenticate": header.format(dir=tmp_path)}, b""),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent.key"]
    assert script.sent[0].headers.get("Authorization") is None
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"
    assert script.sent[1].url == script.sent[0].url and script.sent[1].params == script.sent[0].params


def test_arc_on_another_platform_is_refused(tmp_path: Any) -> None:
    credential_engine, script = _arc(tmp_path, platform="darwin")
    script.queue(Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""))

    check_error(
        failure(script, credential_engine.acquire(RESOURCE)),
        "arc_platform_unsupported",
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )


@pytest.mark.parametrize(
    ("result", "code"),
    [
        (KeyFileResult(error=("arc_key_file_unreadable", "cannot read")), "arc_key_file_unreadable"),
        (KeyFileResult(content=""), "arc_invalid_key_file"),
    ],
)
def test_arc_key_file_problems_are_typed_errors(tmp_path: Any, result: KeyFileResult, code: str) -> None:
    credential_engine, script = _arc(tmp_path)
    script.queue(Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""), result)

    check_error(
        failure(script, credential_engine.acquire(RESOURCE)),
        code,
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )
    assert len(script.sent) == 1


def test_arc_second_401_is_a_rejected_key_and_the_secret_stays_out_of_the_error(tmp_path: Any) -> None:
    credential_engine, script = _arc(tmp_path)
    script.queue(
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""),
        KeyFileResult(content="arc-secret"),
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b"arc-secret"),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, "arc_challenge_rejected", ManagedIdentitySource.AZURE_ARC, status=401)
    assert "arc-secret" not in str(error)


def test_arc_secret_is_scrubbed_from_a_later_error(tmp_path: Any) -> None:
    credential_engine, script = _arc(tmp_path, retry_total=0)
    body = b'{"error": "server_error", "error_description": "bad key arc-secret"}'
    script.queue(
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b""),
        KeyFileResult(content="arc-secret"),
        Response(500, {"content-type": "application/json"}, body),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    assert error.status_code == 500 and "arc-secret" not in str(error)


def _arc_challenge(directory: str) -> Response:
    return Response(401, {"www-authenticate": f"Basic realm={directory}/agent.key"}, b"")


# change: Arc's echo accepted only under `msi_res_id`, not `mi_res_id`
@pytest.mark.parametrize("echo_name", ["msi_res_id", "mi_res_id"])
def test_arc_accepts_the_resource_id_echoed_under_either_name(echo_name: str, tmp_path: Any) -> None:
    clock = Clock()
    resource_id = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"
    )
    credential_engine = engine(
        ARC, clock, resource_id=resource_id, _platform="linux", _arc_key_directory=str(tmp_path)
    )
    script = Script(clock).queue(
        _arc_challenge(str(tmp_path)),
        KeyFileResult(content="arc-secret"),
        token_response("arc", **{echo_name: resource_id.upper()}),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent.key"]
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"


def test_arc_refuses_an_answer_that_echoes_another_resource_id(tmp_path: Any) -> None:
    clock = Clock()
    credential_engine = engine(
        ARC, clock, resource_id="/r/wanted", _platform="linux", _arc_key_directory=str(tmp_path)
    )
    script = Script(clock).queue(
        _arc_challenge(str(tmp_path)),
        KeyFileResult(content="arc-secret"),
        token_response("arc", mi_res_id="/r/other", msi_res_id="/r/other"),
    )

    with pytest.raises(ManagedIdentityError) as caught:
        script.run(credential_engine.acquire(RESOURCE))
    assert caught.value.error_code == "arc_identity_not_confirmed"


def test_arc_not_confirming_the_identity_says_the_token_was_discarded() -> None:
    identity = Identity("client_id", "11111111-2222-3333-4444-555555555555")

    error = raised(lambda: azure_arc.confirm(identity, {"client_id": "another"}))

    assert error_fields(error) == (
        False,
        "arc_identity_not_confirmed",
        200,
        ManagedIdentitySource.AZURE_ARC,
        "Azure Arc managed identity endpoint did not confirm the requested identity with client_id; the token was "
        "discarded (the agent may not support user-assigned identities)",
    )


def _arc_config(directory: str, platform: str = "linux") -> SourceConfig:
    return SourceConfig(
        ManagedIdentitySource.AZURE_ARC, "http://127.0.0.1:9", platform=platform, arc_key_directory=directory
    )


def test_arc_on_another_platform_names_the_platform() -> None:
    error = raised(lambda: key_file_named(_arc_config("/keys", "darwin"), "Basic realm=/keys/a.key"))

    assert error_fields(error) == (
        False,
        "arc_platform_unsupported",
        401,
        ManagedIdentitySource.AZURE_ARC,
        "Azure Arc managed identity endpoint: Azure Arc managed identity is supported on Linux and Windows, "
        "not darwin",
    )


def test_arc_key_file_outside_the_directory_names_the_directory() -> None:
    error = raised(lambda: key_file_named(_arc_config("/keys"), "Basic realm=/elsewhere/a.key"))

    assert error_fields(error) == (
        False,
        "arc_invalid_key_file",
        401,
        ManagedIdentitySource.AZURE_ARC,
        "Azure Arc managed identity endpoint: the challenge names a key file outside /keys or without the .key "
        "extension",
    )


def test_arc_key_file_on_drive_x_keeps_its_drive_letter() -> None:
    config = _arc_config("X:\\ProgramData\\AzureConnectedMachineAgent\\Tokens", "windows")
    header = 'Basic realm="X:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.key"'

    assert key_file_named(config, header) == "X:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.key"


@pytest.mark.parametrize(
    ("path", "directory", "windows", "valid"),
    [
        (LINUX_KEYS + "/a.key", LINUX_KEYS, False, True),
        (LINUX_KEYS + "/a.key", LINUX_KEYS + "/", False, True),
        (LINUX_KEYS + "/.key", LINUX_KEYS, False, False),
        (LINUX_KEYS + "/a.KEY", LINUX_KEYS, False, False),
        (LINUX_KEYS + "/sub/a.key", LINUX_KEYS, False, False),
        (LINUX_KEYS + "/../a.key", LINUX_KEYS, False, False),
        ("var/opt/azcmagent/tokens/a.key", "var/opt/azcmagent/tokens", False, False),
        (WINDOWS_KEYS + "\\a.key", WINDOWS_KEYS, True, True),
        ("c:\\programdata\\azureconnectedmachineagent\\tokens\\A.KEY", WINDOWS_KEYS + "\\", True, True),
        (WINDOWS_KEYS + "\\.key", WINDOWS_KEYS, True, False),
        (WINDOWS_KEYS + "\\..\\a.key", WINDOWS_KEYS, True, False),
        (WINDOWS_KEYS.replace("\\", "/") + "/../a.key", WINDOWS_KEYS, True, False),
        ("C:\\Other\\a.key", WINDOWS_KEYS, True, False),
        (WINDOWS_KEYS + "\\a.txt", WINDOWS_KEYS, True, False),
        ("ProgramData\\a.key", "ProgramData", True, False),
        # a key directory whose name ends in 'X' is that directory, with or without its trailing separator
        ("/var/tokensX/a.key", "/var/tokensX", False, True),
        ("/var/tokensX/a.key", "/var/tokensX/", False, True),
        ("C:\\TokensX\\a.key", "C:\\TokensX", True, True),
        ("C:\\TokensX\\a.key", "C:\\TokensX\\", True, True),
        # '..' is refused even where the key directory itself names it
        ("/opt/../tokens/a.key", "/opt/../tokens", False, False),
        ("C:\\opt\\..\\tokens\\a.key", "C:\\opt\\..\\tokens", True, False),
    ],
)
def test_arc_key_path_must_be_a_key_file_directly_in_the_key_directory(
    path: str, directory: str, windows: bool, valid: bool
) -> None:
    assert valid_key_path(path, directory, windows) is valid
