"""The command line as az users type it: no abbreviations, --resource / --scope, -o json in az's format,
conflicting flags refused with exit 2, a real IMDS probe, progress on a terminal, and --help everywhere
(samples and the benchmark included)."""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from msi_credential import cli
from msi_credential.cli import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Progress,
    az_document,
    build_parser,
    main,
)
from msi_credential.emulator import Emulator, Fault, UserAssignedIdentity, decode_jwt

from .conftest import MANAGED_IDENTITY_VARIABLES

ROOT = Path(__file__).resolve().parent.parent
STORAGE = "https://storage.azure.com"
VAULT = "https://vault.azure.net"
IDENTITY = UserAssignedIdentity(
    client_id="aaaaaaaa-1111-1111-1111-111111111111",
    object_id="bbbbbbbb-2222-2222-2222-222222222222",
    resource_id="/subscriptions/0b1f6471-1bf0-4dda-aec3-111122223333/resourceGroups/g/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/a",
)
SUBPROCESS_TIMEOUT = 60.0


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def run(argv: list[str]) -> tuple[int, str]:
    buffer = io.StringIO()
    code = main(argv, stdout=buffer)
    return code, buffer.getvalue()


def run_exit(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as raised:
        main(argv, stdout=io.StringIO())
    code = raised.value.code
    assert isinstance(code, int)
    return code


def flat(text: str) -> str:
    return " ".join(text.split())


def clean_environment() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in MANAGED_IDENTITY_VARIABLES}
    env.update({"NO_PROXY": "*", "no_proxy": "*"})
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    return env


@pytest.fixture
def app_service(emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    emulator: Emulator = emulator_factory("app_service", identities=[IDENTITY])
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    return emulator


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
    code, out = run(["token", "--resource", STORAGE, "--client-id", IDENTITY.client_id, "--raw"])

    assert code == EXIT_OK
    claims = decode_jwt(out.strip())
    assert claims["aud"] == STORAGE
    assert claims["appid"] == IDENTITY.client_id
    assert "mi_res_id" not in app_service.requests[0].query


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["token", VAULT, "--resource", STORAGE], "give the resource once: RESOURCE_OR_SCOPE and --resource"),
        (["token", VAULT, "--scope", f"{STORAGE}/.default"], "RESOURCE_OR_SCOPE and --scope were both given"),
        (["token", "--resource", VAULT, "--scope", f"{STORAGE}/.default"], "--resource and --scope"),
        (
            ["token", "--scope", f"{VAULT}/.default", f"{STORAGE}/.default"],
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
    assert run_exit(["token", VAULT, "--resource", STORAGE]) == EXIT_USAGE
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
    code, out = run(["token", "--scope", f"{STORAGE}/.default", "--output", "json"])

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


# ------------------------------------------------------------------------------------------------ detect --probe


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


# ------------------------------------------------------------------------------------------------ --help everywhere


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / "samples").glob("*.py")))
def test_every_sample_answers_help_without_running(name: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "samples" / name), "--help"],
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: ")
    assert "emulator at" not in result.stdout  # it helped; it did not run


def test_benchmark_without_the_dev_extra_says_what_to_install() -> None:
    script = ROOT / "benchmarks" / "compare.py"
    prelude = "import sys\nsys.modules['azure.identity'] = None\n"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            f"{prelude}import runpy\nsys.argv = [{str(script)!r}, '--quick']\n"
            f"runpy.run_path({str(script)!r}, run_name='__main__')",
        ],
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "azure-identity" in result.stderr
    assert 'pip install -e ".[dev]"' in result.stderr


def test_benchmark_help_works_without_the_dev_extra() -> None:
    script = ROOT / "benchmarks" / "compare.py"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nsys.modules['azure.identity'] = None\nimport runpy\n"
            f"sys.argv = [{str(script)!r}, '--help']\nrunpy.run_path({str(script)!r}, run_name='__main__')",
        ],
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
