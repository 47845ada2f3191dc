"""msi_credential/cli.py: the msi-credential command through its real entry points: ``main(argv)``, ``python -m``
and the console script; and as az users type it: no abbreviations, --resource / --scope, -o json in az's format,
conflicting flags refused with exit 2, a real IMDS probe, progress on a terminal. (The ``emulate`` command itself:
tests/emulator/test_cli.py.)

Every ``token`` and ``detect --probe`` test points the environment at a loopback emulator or a closed loopback port;
nothing here ever reaches 169.254.169.254.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import msi_credential
import msi_credential._environment as environment
from msi_credential import ManagedIdentitySource, cli
from msi_credential.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Progress,
    az_document,
    build_parser,
    main,
)
from msi_credential.emulator import Emulator, Fault, decode_jwt

from ..skips import skip_or_fail_in_ci
from .conftest import (
    IDENTITY,
    LINE_TIMEOUT,
    STORAGE,
    STORAGE_RESOURCE,
    SUBPROCESS_TIMEOUT,
    VAULT,
    clean_environment,
    flat,
    point_at,
    run,
    run_exit,
    run_refused,
)

SOURCES = ("imds", "app_service", "azure_arc", "cloud_shell", "service_fabric", "machine_learning")


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


# ------------------------------------------------------------------------------------------------ help, version


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ["token", "detect", "emulate", "demo", "Exit codes", "3 managed identity unavailable"]),
        (["token"], ["RESOURCE_OR_SCOPE", "--client-id", "--object-id", "--resource-id", "--json", "--raw"]),
        (["token"], ["--decode", "the signature is NOT checked"]),
        (["detect"], ["--probe", "Nothing is sent unless --probe is given"]),
        (["emulate"], ["--source", "app_service", "machine_learning", "--port", "--identity", "Ctrl-C"]),
        (["demo"], ["emulator", "cache"]),
    ],
)
def test_help_on_every_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], expected: list[str]
) -> None:
    assert run_exit([*argv, "--help"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: msi-credential")
    for fragment in expected:
        assert fragment in flat(captured.out)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_exit(["--version"]) == 0
    assert capsys.readouterr().out.startswith("msi-credential ")


# ------------------------------------------------------------------------------------------------ abbreviations


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(all_parsers(child))
    return found


def test_no_parser_accepts_abbreviations() -> None:
    parsers = all_parsers(build_parser())

    assert len(parsers) >= 5  # the command and each subcommand
    assert all(parser.allow_abbrev is False for parser in parsers)


@pytest.mark.parametrize(
    "argv",
    [
        ["token", VAULT, "--client", "x"],
        ["token", VAULT, "--object", "x"],
        ["token", VAULT, "--resource-i", "x"],
        ["token", VAULT, "--dec"],
        ["detect", "--pro"],
        ["emulate", "--sou", "imds"],
        ["--vers", "detect"],
    ],
)
def test_an_abbreviated_option_is_refused_with_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    assert run_exit(argv) == EXIT_USAGE
    assert "unrecognized arguments" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ bad arguments


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["launch"], "invalid choice: 'launch'"),
        (["token"], "a resource or scope is required: RESOURCE_OR_SCOPE, --resource or --scope"),
        (["token", STORAGE, "--client-id", "a", "--object-id", "b"], "not allowed with argument --client-id"),
        (
            ["token", STORAGE, "--object-id", "a", "--resource-id", "b"],
            "not allowed with argument --object-id",
        ),
        (["token", STORAGE, "--json", "--raw"], "not allowed with argument --json"),
        (["token", STORAGE, "--client-id"], "expected one argument"),
        (["token", "a", "b"], "unrecognized arguments: b"),
        (["detect", "--fast"], "unrecognized arguments: --fast"),
        (["demo", "now"], "unrecognized arguments: now"),
        (["emulate", "--port", "abc"], "argument --port: not a port number: 'abc'"),
        (["emulate", "--port", "70000"], "argument --port: port must be 0 to 65535, not 70000"),
        (["emulate", "--port", "-1"], "port must be 0 to 65535"),
        (["emulate", "--fail", "200"], "expected HTTP statuses from 400 to 599, not '200'"),
        (["emulate", "--latency", "-1"], "latency must be 0 to 600 seconds"),
        (["emulate", "--format", "yaml"], "argument --format: invalid choice: 'yaml'"),
        (["emulate", "--source", "kubernetes"], "argument --source: invalid choice: 'kubernetes'"),
        (["emulate", "--host", "0.0.0.0"], "argument --host: invalid choice: '0.0.0.0'"),
        (["emulate", "--identity", "only-a-client-id"], "expected CLIENT_ID,OBJECT_ID[,RESOURCE_ID]"),
        (["emulate", "--identity", "a,,c"], "expected CLIENT_ID,OBJECT_ID[,RESOURCE_ID]"),
        (["emulate", "--lifetime", "0"], "lifetime must be 1 second to 7 days"),
        (["emulate", "--lifetime", "soon"], "not a number of seconds: 'soon'"),
        (["detect", "--probe", "--timeout", "0"], "must be more than 0 and at most 600 seconds"),
        (["detect", "--probe", "--timeout", "nan"], "must be more than 0 and at most 600 seconds"),
        (["detect", "--probe", "--timeout", "soon"], "not a number of seconds: 'soon'"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], no_connections: list[Any], argv: list[str], message: str
) -> None:
    assert run_exit(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: msi-credential" in captured.err
    assert message in flat(captured.err)
    assert no_connections == []


@pytest.mark.parametrize("scope", ["", "   ", "https://vault.azure.net/ x", "https://x/.default/.default"])
def test_token_bad_scope_exits_2_before_any_connection(
    capsys: pytest.CaptureFixture[str], no_connections: list[Any], scope: str
) -> None:
    err = run_refused(["token", scope], EXIT_USAGE, capsys)

    assert err.startswith("msi-credential token: error: ")
    assert "scope" in err
    assert no_connections == []


def test_token_empty_client_id_exits_2(capsys: pytest.CaptureFixture[str], no_connections: list[Any]) -> None:
    code, _ = run(["token", STORAGE, "--client-id", ""])

    assert code == EXIT_USAGE
    assert "msi-credential token: error: client_id must be a non-empty string" in capsys.readouterr().err
    assert no_connections == []


def test_bad_arguments_through_the_module_entry_point() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "msi_credential", "emulate", "--port", "abc"],
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stdout == ""
    assert "msi-credential emulate: error: argument --port: not a port number: 'abc'" in result.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["token", STORAGE, "--raw"],
        ["token", STORAGE, "--json"],
        ["detect"],
        ["emulate", "--source", "app_service"],
        ["--help"],
    ],
)
def test_a_closed_output_pipe_ends_every_command_quietly_with_141(
    emulator_factory: Any, argv: list[str]
) -> None:
    emulator: Emulator = emulator_factory("app_service")
    process = subprocess.Popen(
        [sys.executable, "-m", "msi_credential", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**clean_environment(), **emulator.environ},
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader goes away before the command writes anything, as `| head -c0` does
    try:
        err = process.stderr.read().decode("utf-8", "replace")
        process.wait(SUBPROCESS_TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(SUBPROCESS_TIMEOUT)

    assert (process.returncode, err) == (cli.EXIT_BROKEN_PIPE, "")  # no traceback, no "Exception ignored"


# ------------------------------------------------------------------------------------------------ token


def test_token_shows_source_expiry_and_refresh_but_not_the_token(
    app_service: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(["token", STORAGE])

    assert code == EXIT_OK
    [token] = app_service.issued_tokens()
    assert token not in out
    assert token not in capsys.readouterr().err
    lines = out.splitlines()
    assert "source:      app_service" in lines
    assert "token type:  Bearer" in lines
    [expires] = [line for line in lines if line.startswith("expires:")]
    [refresh] = [line for line in lines if line.startswith("refresh at:")]
    for line in (expires, refresh):
        assert " UTC (in " in line  # absolute, then relative
        assert line.endswith("s)")
    assert "(hidden; use --json, -o json or --raw to print it)" in out
    assert "claims" not in out
    [request] = app_service.requests
    assert request.query["resource"] == "https://storage.azure.com"


def test_token_json_contains_the_token_and_parses(app_service: Emulator) -> None:
    code, out = run(["token", "https://vault.azure.net", "--json"])

    assert code == EXIT_OK
    document = json.loads(out)
    [token] = app_service.issued_tokens()
    assert document["access_token"] == token
    assert document["source"] == "app_service"
    assert document["token_type"] == "Bearer"
    assert isinstance(document["expires_on"], int)
    assert isinstance(document["refresh_on"], int)
    assert document["refresh_on"] < document["expires_on"]
    assert document["expires_on"] == decode_jwt(token)["exp"]
    assert "claims" not in document


def test_token_raw_prints_only_the_token(app_service: Emulator) -> None:
    code, out = run(["token", STORAGE, "--raw"])

    assert code == EXIT_OK
    [token] = app_service.issued_tokens()
    assert out == token + "\n"


def test_token_decode_shows_claims_and_says_the_signature_is_not_checked(app_service: Emulator) -> None:
    code, out = run(["token", "https://vault.azure.net/.default", "--decode"])

    assert code == EXIT_OK
    [token] = app_service.issued_tokens()
    assert token not in out
    assert "claims (decoded only, the signature is NOT checked):" in out
    claims = json.loads(out.split("signature is NOT checked):", 1)[1])
    assert claims == decode_jwt(token)
    assert claims["aud"] == "https://vault.azure.net"


def test_token_json_decode_includes_claims_and_the_note(app_service: Emulator) -> None:
    code, out = run(["token", STORAGE, "--json", "--decode"])

    assert code == EXIT_OK
    document = json.loads(out)
    assert document["claims"] == decode_jwt(document["access_token"])
    assert document["claims_note"] == "decoded only; the signature is not checked"


@pytest.mark.parametrize(
    ("option", "wire_name", "value"),
    [
        ("--client-id", "client_id", IDENTITY.client_id),
        ("--object-id", "object_id", IDENTITY.object_id),
        ("--resource-id", "mi_res_id", IDENTITY.resource_id),
    ],
)
def test_token_for_a_user_assigned_identity(
    app_service: Emulator, option: str, wire_name: str, value: str
) -> None:
    code, out = run(["token", STORAGE, option, value, "--json", "--decode"])

    assert code == EXIT_OK
    [request] = app_service.requests
    assert request.query[wire_name] == value
    claims = json.loads(out)["claims"]
    assert claims["appid"] == IDENTITY.client_id
    assert claims["oid"] == IDENTITY.object_id


def test_token_for_an_identity_the_endpoint_does_not_know_is_unavailable(
    app_service: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    err = run_refused(
        ["token", STORAGE, "--client-id", "cccccccc-3333-3333-3333-333333333333"], EXIT_UNAVAILABLE, capsys
    )

    assert err.startswith("unavailable (identity_not_found): ")
    assert app_service.secret not in err


def test_token_imds_identity_not_found_is_unavailable(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator: Emulator = emulator_factory("imds")
    point_at(monkeypatch, emulator)
    emulator.script(Fault(400, {"error": "invalid_request", "error_description": "Identity not found"}))

    err = run_refused(["token", STORAGE], EXIT_UNAVAILABLE, capsys)

    assert "unavailable (identity_not_found)" in err
    assert len(emulator.requests) == 1  # a 400 is final: no retry


def test_token_refused_by_the_endpoint_fails_with_exit_1(
    app_service: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    app_service.script(Fault(403))

    err = run_refused(["token", STORAGE], EXIT_FAILED, capsys)

    assert err.startswith("failed (http_403): ")
    assert "HTTP 403" in err
    assert len(app_service.requests) == 1


@pytest.mark.parametrize(
    ("status", "code", "kind"), [(403, EXIT_FAILED, "failed"), (400, EXIT_UNAVAILABLE, "unavailable")]
)
def test_token_neutralises_terminal_control_characters_in_the_endpoints_error_text(
    emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    status: int,
    code: int,
    kind: str,
) -> None:
    emulator: Emulator = emulator_factory("imds")
    point_at(monkeypatch, emulator)
    hostile = "Identity not found\x1b[2J\x1b]0;owned\x07\r\nfailed (ok): all is well\x9b31m\u202e"
    emulator.script(Fault(status, {"error": "invalid_request", "error_description": hostile}))

    err = run_refused(["token", STORAGE], code, capsys)

    assert err.startswith(f"{kind} (")
    assert err.count("\n") == 1 and err.endswith("\n")  # one line: no forged second line
    assert not any(not character.isprintable() for character in err[:-1])
    assert "Identity not found?[2J?]0;owned??" in err  # neutralised, still readable


def test_printable_is_the_one_neutraliser_of_endpoint_text() -> None:
    assert cli.printable("a\x1b[31mb\r\nc\td\x00\u202e") == "a?[31mb??c?d??"
    assert cli.printable("é ü 東京") == "é ü 東京"  # printable text is left alone
    assert cli.printable("x" * 200, 120) == "x" * 120 + "..."


def test_token_invalid_endpoint_fails_before_any_connection(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], no_connections: list[Any]
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://10.20.30.40/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "do-not-print-me")

    code, _ = run(["token", STORAGE])

    assert code == EXIT_FAILED
    err = capsys.readouterr().err
    assert "invalid_endpoint" in err
    assert "do-not-print-me" not in err
    assert no_connections == []


@pytest.mark.usefixtures("debug")  # as in tests/integrations/test_observe.py, where every test runs at DEBUG
def test_cli_token_shows_where_the_token_came_from(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert main(["token", STORAGE], stdout=out) == 0
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("from:")]
    assert line.startswith("from:        endpoint (1 HTTP request; ")
    assert emulator.issued_tokens()[0] not in out.getvalue() + capsys.readouterr().err

    out = io.StringIO()
    assert main(["token", STORAGE, "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())["origin"] == "cache"  # the process-wide cache had it from the first run
    out = io.StringIO()
    assert main(["token", STORAGE], stdout=out) == 0
    assert "from:        cache (a cache hit)" in out.getvalue().splitlines()
    assert emulator.tokens_issued == 1
    assert logging.getLogger("msi_credential").level == logging.DEBUG  # caplog's; the CLI restored it


# ------------------------------------------------------------------------------------------------ --resource, --scope


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "--resource", VAULT],
        ["token", "--scope", f"{VAULT}/.default"],
        ["token", VAULT],
        ["token", f"{VAULT}/.default"],
    ],
)
def test_the_resource_typed_as_az_users_type_it(app_service: Emulator, argv: list[str]) -> None:
    code, out = run([*argv, "--raw"])

    assert code == EXIT_OK
    assert decode_jwt(out.strip())["aud"] == VAULT
    assert [request.query["resource"] for request in app_service.requests] == [VAULT]


def test_resource_with_a_user_assigned_identity_is_not_mistaken_for_resource_id(
    app_service: Emulator,
) -> None:
    code, out = run(["token", "--resource", STORAGE_RESOURCE, "--client-id", IDENTITY.client_id, "--raw"])

    assert code == EXIT_OK
    claims = decode_jwt(out.strip())
    assert claims["aud"] == STORAGE_RESOURCE
    assert claims["appid"] == IDENTITY.client_id
    assert "mi_res_id" not in app_service.requests[0].query


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["token", VAULT, "--resource", STORAGE_RESOURCE],
            "give the resource once: RESOURCE_OR_SCOPE and --resource",
        ),
        (
            ["token", VAULT, "--scope", f"{STORAGE_RESOURCE}/.default"],
            "RESOURCE_OR_SCOPE and --scope were both given",
        ),
        (["token", "--resource", VAULT, "--scope", f"{STORAGE_RESOURCE}/.default"], "--resource and --scope"),
        (
            ["token", "--scope", f"{VAULT}/.default", f"{STORAGE_RESOURCE}/.default"],
            "argument --scope: one scope only",
        ),
        (["token", VAULT, "--raw", "--decode"], "argument --decode: not allowed with argument --raw"),
        (
            ["token", VAULT, "-o", "json", "--decode"],
            "argument --decode: not allowed with argument -o/--output",
        ),
        (["token", VAULT, "-o", "json", "--raw"], "not allowed with argument"),
        (["token", VAULT, "--output", "json", "--json"], "not allowed with argument"),
        (["token", VAULT, "-o", "yaml"], "argument -o/--output: invalid choice: 'yaml'"),
        (["token", "--resource"], "argument --resource: expected one argument"),
        (["token", "--client-id", "x"], "a resource or scope is required"),
    ],
)
def test_conflicting_or_missing_flags_exit_2_before_any_request(
    capsys: pytest.CaptureFixture[str], app_service: Emulator, argv: list[str], message: str
) -> None:
    assert run_exit(argv) == EXIT_USAGE

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: msi-credential token" in captured.err
    assert message in flat(captured.err)
    assert app_service.requests == []


def test_the_issue_example_no_longer_sends_the_storage_url_as_resource_id(
    capsys: pytest.CaptureFixture[str], app_service: Emulator
) -> None:
    assert run_exit(["token", VAULT, "--resource", STORAGE_RESOURCE]) == EXIT_USAGE
    assert app_service.requests == []


# ------------------------------------------------------------------------------------------------ -o json


def test_output_json_has_az_fields_in_az_order_and_format(app_service: Emulator) -> None:
    code, out = run(["token", "--resource", VAULT, "--resource-id", IDENTITY.resource_id, "-o", "json"])

    assert code == EXIT_OK
    document = json.loads(out)
    assert list(document) == ["accessToken", "expiresOn", "expires_on", "subscription", "tenant", "tokenType"]
    claims = decode_jwt(document["accessToken"])
    assert claims["aud"] == VAULT
    assert isinstance(document["expires_on"], int)
    # az writes expiresOn in local time with microseconds, e.g. "2023-10-31 21:59:10.000000"
    local = datetime.fromtimestamp(document["expires_on"]).strftime("%Y-%m-%d %H:%M:%S.%f")
    assert document["expiresOn"] == local
    assert document["tokenType"] == "Bearer"
    assert document["tenant"] == claims["tid"]
    assert document["subscription"] == "0b1f6471-1bf0-4dda-aec3-111122223333"


def test_output_json_for_a_system_assigned_identity_names_the_tenant_only_when_known(
    app_service: Emulator,
) -> None:
    code, out = run(["token", "--scope", f"{STORAGE_RESOURCE}/.default", "--output", "json"])

    assert code == EXIT_OK
    document = json.loads(out)
    assert set(document) >= {"accessToken", "expiresOn", "expires_on", "tokenType"}
    assert document.get("tenant") == decode_jwt(document["accessToken"])["tid"]


def test_az_document_without_a_jwt_prints_only_what_it_knows() -> None:
    document = az_document("opaque-token", 1_700_000_000, "Bearer", None)

    assert document == {
        "accessToken": "opaque-token",
        "expiresOn": datetime.fromtimestamp(1_700_000_000).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_on": 1_700_000_000,
        "tokenType": "Bearer",
    }


# ------------------------------------------------------------------------------------------------ progress


def test_progress_on_a_terminal_shows_each_retry_and_its_cause(
    app_service: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(cli, "Progress", functools.partial(Progress, sleep=slept.append))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    app_service.script(Fault(503), Fault(429))

    code, out = run(["token", "--resource", VAULT])

    assert code == EXIT_OK
    assert slept == [1.0, 2.0]
    lines = terminal.getvalue().splitlines()
    assert lines == [
        "msi-credential: retrying in 1 s after HTTP 503 (1 request(s) sent)",
        "msi-credential: retrying in 2 s after HTTP 429 (2 request(s) sent)",
    ]
    assert "source:      app_service" in out


def test_no_progress_when_stderr_is_not_a_terminal(
    app_service: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = Progress(io.StringIO())
    assert progress.enabled is False
    assert progress.credential_kwargs() == {}  # no hooks, the engine's own sleeper

    code, _ = run(["token", "--resource", VAULT])

    assert code == EXIT_OK
    assert capsys.readouterr().err == ""


def test_progress_reports_a_slow_endpoint_every_few_seconds() -> None:
    terminal = Terminal()
    answers = iter([False, False, True])
    moments = iter([100.0, 103.0, 106.0])
    progress = Progress(terminal, every=3.0, clock=lambda: next(moments), wait=lambda _: next(answers))

    with progress:
        pass

    assert terminal.getvalue().splitlines() == [
        "msi-credential: still waiting for the endpoint: 3 s, 0 request(s) sent",
        "msi-credential: still waiting for the endpoint: 6 s, 0 request(s) sent",
    ]


def test_progress_never_shows_the_token_or_the_secret(
    app_service: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "Progress", functools.partial(Progress, sleep=lambda _: None))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    app_service.script(Fault(500))

    code, out = run(["token", "--resource", VAULT, "--raw"])

    assert code == EXIT_OK
    assert out.strip() not in terminal.getvalue()
    assert os.environ["IDENTITY_HEADER"] not in terminal.getvalue()


# ------------------------------------------------------------------------------------------------ detect


@pytest.mark.parametrize(
    ("source", "reason", "secret_variable"),
    [
        ("app_service", "IDENTITY_ENDPOINT and IDENTITY_HEADER are set", "IDENTITY_HEADER"),
        ("machine_learning", "MSI_ENDPOINT and MSI_SECRET are set", "MSI_SECRET"),
    ],
)
def test_detect_shows_source_and_reasons_masks_secrets_and_sends_nothing(
    emulator_factory: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    source: str,
    reason: str,
    secret_variable: str,
) -> None:
    emulator: Emulator = emulator_factory(source)
    point_at(monkeypatch, emulator)
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("detect connected"))

    code, out = run(["detect"])

    assert code == EXIT_OK
    lines = out.splitlines()
    assert f"source:    {source}" in lines
    assert f"endpoint:  {emulator.url}" in lines
    assert f"because:   {reason}" in lines
    [secret_line] = [line for line in lines if line.strip().startswith(secret_variable)]
    assert secret_line.split()[1:] == ["(set,", "hidden)"]
    assert emulator.secret not in out
    assert emulator.secret not in capsys.readouterr().err
    assert "probe:     not run (use --probe to check that the endpoint answers)" in lines
    assert emulator.requests == []


def test_detect_without_variables_selects_imds_and_never_probes(no_connections: list[Any]) -> None:
    code, out = run(["detect"])

    assert code == EXIT_OK
    assert "source:    imds" in out
    assert "because:   no other source's variables are set" in out
    assert "AZURE_POD_IDENTITY_AUTHORITY_HOST  (not set)" in out
    assert "probe:     not run" in out
    assert no_connections == []


def test_detect_hides_the_user_info_of_an_endpoint(
    monkeypatch: pytest.MonkeyPatch, no_connections: list[Any]
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://svc:p4ssw0rd@127.0.0.1:8081/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "header-secret-value")

    code, out = run(["detect"])

    assert code == EXIT_OK
    assert "p4ssw0rd" not in out and "svc:" not in out
    assert "header-secret-value" not in out
    assert "endpoint:  http://***@127.0.0.1:8081/msi/token" in out
    assert "IDENTITY_ENDPOINT                  http://***@127.0.0.1:8081/msi/token" in out
    assert no_connections == []


def test_detect_probe_against_an_emulator_answers(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator: Emulator = emulator_factory("imds")
    point_at(monkeypatch, emulator)

    code, out = run(["detect", "--probe"])

    assert code == EXIT_OK
    assert "AZURE_POD_IDENTITY_AUTHORITY_HOST replaces the IMDS address" in out
    port = emulator.url.split(":")[2].split("/")[0]
    assert f"probe:     answers (IMDS at 127.0.0.1:{port}: HTTP 400 invalid_request" in out


def test_detect_probe_against_a_closed_port_exits_3(
    monkeypatch: pytest.MonkeyPatch, unused_port: int
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{unused_port}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "secret-value")

    code, out = run(["detect", "--probe"])

    assert code == EXIT_UNAVAILABLE
    assert f"probe:     no answer (127.0.0.1:{unused_port}: " in out
    assert "secret-value" not in out


def test_imds_probe_sends_a_request_without_the_metadata_header_and_names_imds(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator: Emulator = emulator_factory("imds")
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)

    code, out = run(["detect", "--probe"])

    assert code == EXIT_OK
    assert "probe:     answers (IMDS at 127.0.0.1:" in out
    assert "HTTP 400 invalid_request, 'Required metadata header not specified'" in out
    [request] = emulator.requests
    assert request.path == "/metadata/identity/oauth2/token"
    assert "metadata" not in request.headers
    assert emulator.tokens_issued == 0


def test_imds_probe_says_when_something_else_answers_at_the_address(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another metadata server at the IMDS address (AWS, GCP) answers HTTP, but not as IMDS: here the App
    # Service emulator, which has no /metadata path.
    other: Emulator = emulator_factory("app_service")
    base = "/".join(other.url.split("/")[:3])
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", base)

    code, out = run(["detect", "--probe"])

    assert code == EXIT_UNAVAILABLE
    assert "source:    imds" in out
    assert "probe:     no answer (something at 127.0.0.1:" in out
    assert "answered, but not as IMDS does: HTTP 404" in out


def test_imds_probe_of_a_closed_port_is_no_answer(monkeypatch: pytest.MonkeyPatch, unused_port: int) -> None:
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", f"http://127.0.0.1:{unused_port}")

    code, out = run(["detect", "--probe"])

    assert code == EXIT_UNAVAILABLE
    assert f"probe:     no answer (127.0.0.1:{unused_port}: " in out


class TricklingServer:
    """A loopback endpoint that answers a request with its status line one byte at a time, for ever: one byte each
    time ``step()`` allows one, so the test paces it without waiting on a wall clock."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._allowed = threading.Semaphore(0)
        self.sent = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def step(self) -> None:
        self._allowed.release()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        with connection, connection.makefile("rb") as request:
            for header in iter(request.readline, b""):  # the request's head, up to its blank line
                if header in (b"\r\n", b"\n"):
                    break
            else:
                return  # the probe hung up first
            line = b"HTTP/1.1 200 " + b"O" * 60000  # never ends within the test
            while self._allowed.acquire(timeout=LINE_TIMEOUT) and self.sent < len(line):
                try:
                    connection.sendall(line[self.sent : self.sent + 1])
                except OSError:  # the probe hung up
                    return
                self.sent += 1

    def close(self) -> None:
        self._listener.close()
        self._allowed.release()
        self._thread.join(LINE_TIMEOUT)


def test_detect_probe_gives_up_at_its_overall_deadline_however_the_endpoint_trickles() -> None:
    server = TricklingServer()
    now = [0.0]

    def clock() -> float:  # every look at the clock lets one more byte through, and a second pass
        now[0] += 1.0
        server.step()
        return now[0]

    try:
        answered, detail = cli.probe_imds(
            f"http://127.0.0.1:{server.port}/metadata/identity/oauth2/token", timeout=5.0, clock=clock
        )
        looks = now[0]
    finally:
        server.close()

    assert (answered, detail) == (False, f"127.0.0.1:{server.port}: no complete answer within 5 s")
    assert server.sent > 0  # it was answering, a byte at a time, and the probe read on ...
    assert looks <= 7.0  # ... until its deadline (5 s after the start), not until the status line's end


def test_detect_probe_timeout_option_bounds_the_probe(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator: Emulator = emulator_factory("imds")
    point_at(monkeypatch, emulator)
    seen: list[float] = []
    probe = cli.probe_imds

    def recording_probe(endpoint: str, *, timeout: float) -> tuple[bool, str]:
        seen.append(timeout)
        return probe(endpoint, timeout=timeout)

    monkeypatch.setattr(cli, "probe_imds", recording_probe)

    assert run(["detect", "--probe", "--timeout", "2.5"])[0] == EXIT_OK
    assert run(["detect", "--probe"])[0] == EXIT_OK
    assert seen == [2.5, cli.PROBE_TIMEOUT]


@pytest.mark.parametrize(
    "endpoint", ["http://10.20.30.40/msi/token", "http://127.0.0.1@evil.example/msi/token"]
)
def test_detect_probe_never_connects_to_a_rejected_endpoint(
    monkeypatch: pytest.MonkeyPatch, no_connections: list[Any], endpoint: str
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", "secret-value")

    code, out = run(["detect", "--probe"])

    assert code == EXIT_FAILED
    assert "problem:   invalid_endpoint: IDENTITY_ENDPOINT must be" in out
    assert "probe:     not run (the configuration is invalid" in out
    assert no_connections == []


def test_detect_uses_it_and_shows_the_token_proxy(
    monkeypatch: pytest.MonkeyPatch, emulator_factory: Any
) -> None:
    emulator: Emulator = emulator_factory("workload_identity", token_proxy=True)
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    asked: list[bool] = []
    real = msi_credential.get_managed_identity_source

    def spy() -> ManagedIdentitySource:
        asked.append(True)
        return real()

    monkeypatch.setattr(environment, "get_managed_identity_source", spy)
    out = io.StringIO()

    assert main(["detect"], stdout=out) == 0

    text = out.getvalue()
    assert asked == [True]
    assert "source:    workload_identity" in text
    assert f"with enable_azure_proxy=True, token requests go to {emulator.url}" in text
    assert "AZURE_KUBERNETES_SNI_NAME" in text
    assert emulator.requests == []


def test_detect_says_when_the_proxy_configuration_would_be_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/f")
    monkeypatch.setenv("AZURE_TENANT_ID", "t")
    monkeypatch.setenv("AZURE_KUBERNETES_SNI_NAME", "x.invalid")
    out = io.StringIO()

    assert main(["detect"], stdout=out) == 0

    assert (
        "enable_azure_proxy=True would refuse this: AZURE_KUBERNETES_SNI_NAME is set without"
        in out.getvalue()
    )


# ------------------------------------------------------------------------------------------------ demo


def demo_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in SOURCES:
            rows[parts[0]] = parts
    return rows


def check_demo_output(text: str) -> None:
    assert "source" in text and "detected as" in text and "2nd call" in text
    rows = demo_rows(text)
    assert sorted(rows) == sorted(SOURCES)
    for source, (
        _,
        detected,
        first_time,
        first_requests,
        second_time,
        second_requests,
        audience,
    ) in rows.items():
        assert detected == source
        assert first_time.endswith("ms")
        assert int(first_requests) == (2 if source == "azure_arc" else 1)
        assert second_time.endswith("us")
        assert second_requests == "0"  # the second call came from the cache
        assert audience == "https://storage.azure.com"
    assert "2nd call: served from the in-memory cache, no request." in text


def check_demo_command(command: list[str]) -> None:
    """The demo run as a subprocess through ``command`` (an entry point): it exits 0 and prints its table."""
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=clean_environment(),
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stderr
    check_demo_output(result.stdout)


def test_demo_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["demo"])

    assert code == EXIT_OK
    check_demo_output(out)
    assert "failed" not in out
    assert "Traceback" not in capsys.readouterr().err


def test_demo_through_python_m() -> None:
    check_demo_command([sys.executable, "-m", "msi_credential", "demo"])


def test_demo_through_the_console_script() -> None:
    script = Path(sys.executable).parent / (
        "msi-credential.exe" if sys.platform == "win32" else "msi-credential"
    )
    if not script.exists():
        skip_or_fail_in_ci(f"console script not installed next to {sys.executable} (pip install -e .)")
    check_demo_command([str(script), "demo"])


def test_demo_without_the_emulator_extra_runs_and_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)  # a fresh machine with only `pip install -e .`
    out = io.StringIO()

    code = main(["demo"], stdout=out)

    assert code == EXIT_OK
    rows = {line.split()[0]: line for line in out.getvalue().splitlines() if line.split()}
    assert "skipped" in rows["service_fabric"] and "msi-credential[emulator]" in rows["service_fabric"]
    served = ("imds", "app_service", "azure_arc", "cloud_shell", "machine_learning", "workload_identity")
    for source in served:
        assert rows[source].endswith("https://storage.azure.com"), rows[source]


def test_demo_includes_the_token_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    out = io.StringIO()
    assert cli.main(["demo"], stdout=out) == 0
    [row] = [line for line in out.getvalue().splitlines() if line.startswith("+ token proxy ")]
    detected, first, first_requests, second, second_requests, audience = row.split()[3:]
    assert detected == "workload_identity"
    assert first.endswith("ms") and first_requests == "1"
    assert second.endswith("us") and second_requests == "0"  # from the cache
    assert audience == "https://storage.azure.com"
