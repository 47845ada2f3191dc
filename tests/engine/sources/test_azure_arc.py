"""Azure Arc (``_engine/sources/azure_arc.py``): the 401 challenge, the key file checks and the echo rule through the
scripted driver (tests/engine/scripted.py, no sockets) and its functions called directly (key_file_named,
valid_key_path, confirm), then through the public credential on both faces against the emulator, and a key that is
not ASCII against a loopback server. Its first request, with every source's: test_spec.py."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.detection import SourceConfig
from msi_credential._engine.effects import KeyFileResult, Response, TransportFailure
from msi_credential._engine.identity import Identity
from msi_credential._engine.sources import azure_arc
from msi_credential._engine.sources.azure_arc import key_file_named, valid_key_path
from msi_credential.emulator import Fault, UserAssignedIdentity

from ...faces.support import STORAGE
from ...transport import support
from ...transport.support import assert_secret_absent, http_answer
from ..scripted import ARC, Clock, Script, check_error, engine, error_fields, raised, token_response
from .support import RESOURCE, failure

WINDOWS_KEYS = "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens"
LINUX_KEYS = "/var/opt/azcmagent/tokens"  # the agent's key directory on Linux

# ------------------------------------------------------------------------ the engine's rules, scripted
# A comment above a test names the one-line change that it catches.


def _arc(directory: str, platform: str = "linux", **kwargs: Any) -> tuple[Any, Script]:
    clock = Clock()
    credential_engine = engine(ARC, clock, _platform=platform, _arc_key_directory=directory, **kwargs)
    return credential_engine, Script(clock)


def _challenge(realm: Optional[str]) -> Response:
    return Response(401, {} if realm is None else {"www-authenticate": realm}, b"")


@pytest.mark.parametrize(
    ("answers", "code", "why"),
    [
        ([_challenge(None)], "arc_challenge_missing", "401 without a WWW-Authenticate challenge"),
        (
            [_challenge("Bearer realm=x")],
            "arc_challenge_invalid",
            "the challenge is not 'Basic realm=<key file>'",
        ),
        ([_challenge("Basic realm=")], "arc_challenge_invalid", "the challenge names no key file"),
        (
            [_challenge("Basic realm={dir}/" + "a" * 65_536 + ".key")],
            "arc_challenge_invalid",
            "the challenge is over 8192 characters",
        ),
        (
            [_challenge("Basic realm={dir}/agent.key"), KeyFileResult(content="")],
            "arc_invalid_key_file",
            "the key file is empty",
        ),
        (
            [
                _challenge("Basic realm={dir}/agent.key"),
                KeyFileResult(error=("arc_key_file_unreadable", "the key file cannot be read")),
            ],
            "arc_key_file_unreadable",
            "the key file cannot be read",
        ),
        (
            [
                _challenge("Basic realm={dir}/agent.key"),
                KeyFileResult(content="arc-secret"),
                _challenge("Basic realm={dir}/agent.key"),
            ],
            "arc_challenge_rejected",
            "the agent refused the key file's secret",
        ),
    ],
)
def test_arc_challenge_refusals_say_what_was_wrong(
    tmp_path: Any, answers: list[Any], code: str, why: str
) -> None:
    credential_engine, script = _arc(str(tmp_path))
    for answer in answers:
        if isinstance(answer, Response) and "www-authenticate" in answer.headers:
            realm = answer.headers["www-authenticate"].format(dir=tmp_path)
            answer = Response(401, {"www-authenticate": realm}, b"")
        script.queue(answer)

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, code, ManagedIdentitySource.AZURE_ARC, status=401)
    assert str(error).startswith(f"Azure Arc managed identity endpoint: {why}")


@pytest.mark.parametrize(
    ("directory", "realm"),
    [
        (WINDOWS_KEYS, "Basic realm=c:\\programdata\\azureconnectedmachineagent\\tokens\\Agent.KEY"),
        (WINDOWS_KEYS + "\\", f"Basic realm={WINDOWS_KEYS}\\agent.key"),
        ("C:\\", "Basic realm=C:\\agent.key"),  # a key directory at the root of a drive
    ],
)
def test_arc_on_windows_reads_a_key_file_of_the_key_directory(directory: str, realm: str) -> None:
    credential_engine, script = _arc(directory, platform="win32")
    script.queue(_challenge(realm), KeyFileResult(content="arc-secret"), token_response("arc"))

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [realm.removeprefix("Basic realm=")]
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"


def test_arc_on_windows_refuses_a_key_file_outside_the_key_directory() -> None:
    credential_engine, script = _arc(WINDOWS_KEYS, platform="win32")
    script.queue(_challenge("Basic realm=C:\\Users\\Public\\agent.key"))

    check_error(
        failure(script, credential_engine.acquire(RESOURCE)),
        "arc_invalid_key_file",
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )
    assert script.reads == []


def test_arc_accepts_a_key_file_name_with_spaced_dots(tmp_path: Any) -> None:
    # ".." is refused as a path component, not as text inside a file name
    credential_engine, script = _arc(str(tmp_path))
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent .. 1.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent .. 1.key"]


def test_an_arc_answer_for_another_identity_is_a_failed_200_from_azure_arc(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path), client_id="wanted-client")
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc", client_id="other-client"),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, "arc_identity_not_confirmed", ManagedIdentitySource.AZURE_ARC, status=200)


def test_an_arc_connection_failure_is_retried_before_any_challenge(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path))
    script.queue(
        TransportFailure("connect", "refused"),
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.sleeps == [1.0] and len(script.sent) == 3


def test_arc_found_by_its_agent_names_the_endpoint_when_it_never_answers() -> None:
    clock = Clock()
    credential_engine = engine({}, clock, _platform="linux", _path_exists=lambda path: True, retry_total=0)
    script = Script(clock).queue(TransportFailure("connect", "refused"))

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, "endpoint_unreachable", ManagedIdentitySource.AZURE_ARC)
    assert "at the endpoint (http://127.0.0.1:40342/metadata/identity/oauth2/token)" in str(error)


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
    credential_engine, script = _arc(str(tmp_path))
    headers = {} if header is None else {"www-authenticate": header.format(dir=tmp_path)}
    script.queue(Response(401, headers, b""))

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, code, ManagedIdentitySource.AZURE_ARC, status=401)
    assert script.reads == [] and len(script.sent) == 1


@pytest.mark.parametrize("header", ['basic REALM="{dir}/agent.key"', "  Basic realm= {dir}/agent.key  "])
def test_arc_challenge_prefix_is_case_insensitive_and_the_path_may_be_quoted(
    tmp_path: Any, header: str
) -> None:
    credential_engine, script = _arc(str(tmp_path))
    script.queue(
        _challenge(header.format(dir=tmp_path)),
        KeyFileResult(content="arc-secret"),
        token_response("arc"),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent.key"]
    assert script.sent[0].headers.get("Authorization") is None
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"
    assert script.sent[1].url == script.sent[0].url and script.sent[1].params == script.sent[0].params


def test_arc_on_another_platform_is_refused(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path), platform="darwin")
    script.queue(_challenge(f"Basic realm={tmp_path}/agent.key"))

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
    credential_engine, script = _arc(str(tmp_path))
    script.queue(_challenge(f"Basic realm={tmp_path}/agent.key"), result)

    check_error(
        failure(script, credential_engine.acquire(RESOURCE)),
        code,
        ManagedIdentitySource.AZURE_ARC,
        status=401,
    )
    assert len(script.sent) == 1


def test_arc_second_401_is_a_rejected_key_and_the_secret_stays_out_of_the_error(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path))
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        Response(401, {"www-authenticate": f"Basic realm={tmp_path}/agent.key"}, b"arc-secret"),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    check_error(error, "arc_challenge_rejected", ManagedIdentitySource.AZURE_ARC, status=401)
    assert "arc-secret" not in str(error)


def test_arc_secret_is_scrubbed_from_a_later_error(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path), retry_total=0)
    body = b'{"error": "server_error", "error_description": "bad key arc-secret"}'
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        Response(500, {"content-type": "application/json"}, body),
    )

    error = failure(script, credential_engine.acquire(RESOURCE))

    assert error.status_code == 500 and "arc-secret" not in str(error)


# change: Arc's echo accepted only under `msi_res_id`, not `mi_res_id`
@pytest.mark.parametrize("echo_name", ["msi_res_id", "mi_res_id"])
def test_arc_accepts_the_resource_id_echoed_under_either_name(echo_name: str, tmp_path: Any) -> None:
    resource_id = (
        "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u"
    )
    credential_engine, script = _arc(str(tmp_path), resource_id=resource_id)
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc", **{echo_name: resource_id.upper()}),
    )

    assert script.run(credential_engine.acquire(RESOURCE)).token == "arc"
    assert script.reads == [f"{tmp_path}/agent.key"]
    assert script.sent[1].headers["Authorization"] == "Basic arc-secret"


def test_arc_refuses_an_answer_that_echoes_another_resource_id(tmp_path: Any) -> None:
    credential_engine, script = _arc(str(tmp_path), resource_id="/r/wanted")
    script.queue(
        _challenge(f"Basic realm={tmp_path}/agent.key"),
        KeyFileResult(content="arc-secret"),
        token_response("arc", mi_res_id="/r/other", msi_res_id="/r/other"),
    )

    with pytest.raises(ManagedIdentityError) as caught:
        script.run(credential_engine.acquire(RESOURCE))
    assert caught.value.error_code == "arc_identity_not_confirmed"


# ------------------------------------------ the key file's name and the identity echo, called directly


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


# change: a challenge of exactly 8192 characters is refused as over the limit
def test_arc_reads_a_challenge_of_up_to_8192_characters() -> None:
    header = "Basic realm=/keys/a.key".ljust(8192)  # padded with spaces, which the reading strips

    assert key_file_named(_arc_config("/keys"), header) == "/keys/a.key"
    error = raised(lambda: key_file_named(_arc_config("/keys"), header + " "))
    assert error.error_code == "arc_challenge_invalid"


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


# -------------------------------------------- through the credential, both faces, against the emulator


ARM = "https://management.azure.com/.default"


IDENTITY = UserAssignedIdentity(
    client_id="12121212-1111-1111-1111-111111111111",
    object_id="34343434-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/r",
)


def challenge(path: str) -> Fault:
    return Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"})


def test_arc_answers_the_challenge_with_the_key_file(face: Any, emulator_factory: Any) -> None:
    # What both requests share: test_spec.py::test_source_returns_a_token_for_the_audience_and_sends_its_exact_request
    emulator = emulator_factory("azure_arc")
    credential = face.credential(emulator)

    credential.get_token(ARM)

    first, second = emulator.requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"].startswith("Basic ")


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


# Azure Arc's key file stays secret: the agent's echo of it is scrubbed; a key with non-ASCII or control characters
# is ``arc_invalid_key_file``, never sent and never quoted (the non-ASCII key against a loopback server).


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


def test_arc_key_with_control_characters_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    path = os.path.join(emulator.credential_kwargs["_arc_key_directory"], "bad.key")
    with open(path, "w") as handle:
        handle.write("key-part-one\nkey-part-two")
    emulator.script(Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert "key-part" not in str(caught.value)
    assert len(emulator.requests) == 1


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
        credential.get_token(STORAGE)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert len(server.raw) == 1  # the challenge only: the key was never sent
    assert_secret_absent(caught.value, key)
