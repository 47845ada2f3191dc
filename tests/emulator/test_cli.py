"""msi_credential/emulator/_cli.py: ``msi-credential emulate`` as a command, run as a process and in-process: what it
prints in each format (the AKS token proxy's variables too), its files, its life cycle and stop signals, faults,
identities and scenarios from the command line, and our own ``token`` command against it."""

from __future__ import annotations

import http.client
import io
import json
import logging
import os
import queue
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Optional
from urllib.parse import urlencode, urlsplit

import pytest

from msi_credential import ManagedIdentityCredential
from msi_credential import emulator as emulator_package
from msi_credential.cli import EXIT_OK, EXIT_USAGE, build_parser, main
from msi_credential.emulator import ARC_KEY_DIRECTORY, TOKEN_PROXY_SERVER_NAME, decode_jwt
from msi_credential.emulator import _cli as emulator_cli

from ..cli.conftest import IDENTITY, LINE_TIMEOUT, STORAGE, SUBPROCESS_TIMEOUT, clean_environment, run
from ..conftest import MANAGED_IDENTITY_VARIABLES
from .http_calls import EXPECTED_ENVIRON

# `msi-credential emulate --source azure_arc` writes its key files in the Arc agent's own directory
# (/var/opt/azcmagent/tokens), which clients read and tests compare: under pytest-xdist (`--dist loadgroup`,
# as CI runs it) every test of this module runs on one worker, one after another.
pytestmark = pytest.mark.xdist_group("arc_agents_directory")

TIMEOUT = 30.0
RESOURCE = "https://storage.azure.com"
USER = ("0c4e2a51-7d3f-4b8e-a1c2-5e6f7a8b9c01", "7f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a02")
TRUST = {"NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}
# What it prints for each source: the emulator's variables, and for a source served over https the ones that make
# clients trust the run's certificate authority.
SOURCE_VARIABLES = {
    **EXPECTED_ENVIRON,
    "service_fabric": {*EXPECTED_ENVIRON["service_fabric"], *TRUST},
    "workload_identity": {
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_AUTHORITY_HOST",
        *TRUST,
    },
}


class Emulate:
    """One ``msi-credential emulate`` process."""

    def __init__(self, argv: list[str], *, shell_background: bool = False) -> None:
        command = [sys.executable, "-m", "msi_credential", "emulate", *argv]
        if shell_background:
            # As a script starts it: `cmd &` in a non-interactive shell, which sets SIGINT to ignored for the job.
            command = ["sh", "-c", shlex.join(command) + " & wait"]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_environment()
        )

    def first_line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"emulate printed nothing: {self.finish()[1][-2000:]}")
        return line.rstrip("\n")

    def document(self) -> dict[str, Any]:
        return dict(json.loads(self.first_line()))

    def lines_until_ready(self) -> list[str]:
        lines = [self.first_line()]
        while not lines[-1].startswith("# Ctrl-C (or kill "):
            lines.append(self.first_line())
        return lines

    def finish(self) -> tuple[str, str]:
        out, err = self.process.communicate(timeout=TIMEOUT)
        return out, err

    def stop(self) -> None:
        """SIGTERM, so that it removes its files; SIGKILL only if it does not exit."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.communicate(timeout=TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.communicate(timeout=TIMEOUT)


@pytest.fixture
def emulate() -> Iterator[Any]:
    started: list[Emulate] = []

    def start(*argv: str, shell_background: bool = False) -> Emulate:
        process = Emulate(list(argv), shell_background=shell_background)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def imds_get(url: str, query: Optional[dict[str, str]] = None) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT)
    try:
        params = query or {"api-version": "2018-02-01", "resource": RESOURCE}
        connection.request("GET", parts.path + "?" + urlencode(params), headers={"Metadata": "true"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def files_of(document: dict[str, Any]) -> list[str]:
    """Every file the printed variables name."""
    names = {"AZURE_FEDERATED_TOKEN_FILE", *TRUST}
    return [value for name, value in document["env"].items() if name in names]


# ---------------------------------------------------------------------------------------------- formats


@pytest.mark.parametrize("source", list(SOURCE_VARIABLES))
def test_every_source_starts_from_the_command_line_with_a_json_document(emulate: Any, source: str) -> None:
    process = emulate("--source", source, "--format", "json", "--identity", ",".join(USER))

    document = process.document()

    assert document["source"] == source
    assert set(document["env"]) == SOURCE_VARIABLES[source]
    assert document["identities"] == [{"client_id": USER[0], "object_id": USER[1], "resource_id": ""}]
    assert document["pid"] == process.process.pid
    https = source in ("service_fabric", "workload_identity")
    assert document["url"].startswith("https://127.0.0.1:" if https else "http://127.0.0.1:")
    assert (document["ca_file"] is not None) == https
    for path in files_of(document):
        assert os.path.isfile(path)
    if source == "workload_identity":
        assert document["env"]["AZURE_CLIENT_ID"] == document["system_identity"]["client_id"]
        assert document["env"]["AZURE_TENANT_ID"] == document["tenant_id"]
    if source == "azure_arc":
        assert document["key_directory"] == ARC_KEY_DIRECTORY
    assert "_arc_key_directory" not in json.dumps(document)

    process.process.send_signal(signal.SIGTERM)
    out, err = process.finish()
    assert process.process.returncode == EXIT_OK
    assert out == ""  # json: the one document on stdout, nothing else
    assert "# stopped (SIGTERM)" in err
    assert not any(os.path.exists(path) for path in files_of(document))


def test_shell_format_comments_every_trust_variable_and_exports_it(emulate: Any) -> None:
    process = emulate("--source", "service_fabric")

    lines = process.lines_until_ready()

    exports = {}
    for index, line in enumerate(lines):
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            [exports[name]] = shlex.split(value)
            if name in TRUST:
                assert lines[index - 1].startswith("# "), f"{name} has no comment saying what it does"
    assert set(exports) == SOURCE_VARIABLES["service_fabric"]
    text = "\n".join(lines)
    assert "NODE_EXTRA_CA_CERTS" in text and "Node.js" in text
    assert "IDENTITY_SERVER_THUMBPRINT pins the server certificate" in text
    assert "keytool -importcert" in text
    assert "_arc_key_directory" not in text


def test_dotenv_format_and_env_file_hold_the_same_variables_and_the_file_goes_at_stop(
    emulate: Any, tmp_path: Path
) -> None:
    env_file = tmp_path / "emulator.env"
    process = emulate("--source", "app_service", "--format", "dotenv", "--env-file", str(env_file))

    lines = process.lines_until_ready()

    printed = dict(line.split("=", 1) for line in lines if not line.startswith("#"))
    written = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
    assert printed == written
    assert set(written) == SOURCE_VARIABLES["app_service"]
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it carries the endpoint's secret
    process.process.send_signal(signal.SIGHUP)
    process.finish()
    assert process.process.returncode == EXIT_OK
    assert not env_file.exists()


def test_an_env_file_that_exists_is_refused_and_left_as_it_was(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from msi_credential.emulator import _cli

    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=postgres://mine\n")
    monkeypatch.setattr(_cli, "wait_until_stopped", lambda stop: pytest.fail("it served"))

    code = main(["emulate", "--source", "imds", "--env-file", str(env_file)], stdout=io.StringIO())

    assert code == EXIT_USAGE
    assert f"--env-file {env_file} already exists" in capsys.readouterr().err
    assert env_file.read_text() == "DATABASE_URL=postgres://mine\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == [".env"]


def test_an_env_file_that_appears_while_it_starts_is_not_replaced(tmp_path: Path) -> None:
    from msi_credential.emulator import _cli

    env_file = tmp_path / ".env"
    env_file.write_text("MINE=1\n")

    with pytest.raises(FileExistsError):
        _cli._write_env_file(str(env_file), {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi/token"})

    assert env_file.read_text() == "MINE=1\n"
    assert sorted(path.name for path in tmp_path.iterdir()) == [".env"]  # no staging file left either


def test_at_stop_it_removes_only_the_env_file_it_wrote(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from msi_credential.emulator import _cli

    env_file = tmp_path / "mi.env"
    seen: list[str] = []

    def user_replaces_the_file(stop: Any) -> None:
        seen.append(env_file.read_text())
        replacement = tmp_path / "edited"
        replacement.write_text("EDITED=1\n")
        os.replace(replacement, env_file)  # e.g. an editor saving over it while the emulator serves

    monkeypatch.setattr(_cli, "wait_until_stopped", user_replaces_the_file)

    code = main(["emulate", "--source", "imds", "--env-file", str(env_file)], stdout=io.StringIO())

    assert code == EXIT_OK
    assert seen and seen[0].startswith("AZURE_POD_IDENTITY_AUTHORITY_HOST=")
    assert env_file.read_text() == "EDITED=1\n"


def test_its_request_log_neutralises_control_characters_a_client_sends(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    from msi_credential.emulator import _cli

    out = io.StringIO()

    def hostile_client(stop: Any) -> None:
        parts = urlsplit(json.loads(out.getvalue())["url"])
        with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
            sock.sendall(
                b"GET /\x1b[2J\x1b]0;owned\x07\x9b31mx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            while sock.recv(4096):
                pass

    monkeypatch.setattr(_cli, "wait_until_stopped", hostile_client)

    assert main(["emulate", "--source", "imds", "--format", "json"], stdout=out) == EXIT_OK

    err = capsys.readouterr().err
    assert "GET /?[2J?]0;owned??31mx -> 404" in err
    assert not any(not character.isprintable() for character in err.replace("\n", ""))


# the AKS token proxy (``--token-proxy``)


@pytest.fixture
def stop_immediately(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(emulator_cli, "wait_until_stopped", lambda stop: None)
    yield


def test_emulate_token_proxy_prints_the_variables(stop_immediately: None) -> None:
    out = io.StringIO()
    assert (
        main(["emulate", "--source", "workload_identity", "--token-proxy", "--format", "json"], stdout=out)
        == 0
    )
    document = json.loads(out.getvalue().splitlines()[0])
    env = document["env"]
    assert env["AZURE_KUBERNETES_TOKEN_PROXY"].startswith("https://127.0.0.1:")
    assert env["AZURE_KUBERNETES_TOKEN_PROXY"].endswith("/aks-token-proxy")
    assert env["AZURE_KUBERNETES_SNI_NAME"] == TOKEN_PROXY_SERVER_NAME
    assert env["AZURE_KUBERNETES_CA_FILE"] == document["ca_file"]
    assert not os.path.exists(document["ca_file"])  # removed at stop
    assert document["token_proxy"] == {"server_name": TOKEN_PROXY_SERVER_NAME, "path": "/aks-token-proxy"}
    assert "REQUESTS_CA_BUNDLE" not in env


def test_emulate_token_proxy_shell_form_explains_it(stop_immediately: None) -> None:
    out = io.StringIO()
    assert main(["emulate", "--source", "workload_identity", "--token-proxy"], stdout=out) == 0
    text = out.getvalue()
    assert "export AZURE_KUBERNETES_SNI_NAME=token-proxy.msi-emulator.invalid" in text
    assert "enable_azure_proxy=True" in text


def test_emulate_token_proxy_needs_workload_identity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["emulate", "--source", "imds", "--token-proxy"], stdout=io.StringIO()) == 2
    assert "--token-proxy needs --source workload_identity" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- life cycle


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("stop_signal", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_each_stop_signal_stops_it_and_removes_every_file_it_wrote(
    emulate: Any, stop_signal: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "wi.env"
    process = emulate("--source", "workload_identity", "--format", "json", "--env-file", str(env_file))
    document = process.document()
    written = [*files_of(document), str(env_file)]
    directories = {os.path.dirname(path) for path in files_of(document)}
    assert all(os.path.exists(path) for path in written)

    process.process.send_signal(getattr(signal, stop_signal))
    _, err = process.finish()

    assert process.process.returncode == EXIT_OK
    assert f"# stopped ({stop_signal})" in err
    assert "Traceback" not in err
    assert not any(os.path.exists(path) for path in [*written, *directories])


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and sh")
def test_sigint_stops_it_when_a_script_started_it_in_the_background(emulate: Any) -> None:
    # The premise: a background job of a script starts with SIGINT ignored.
    if os.path.exists("/proc/self/status"):
        probe = subprocess.run(
            ["sh", "-c", "grep SigIgn /proc/self/status & wait"], capture_output=True, text=True, check=True
        )
        assert int(probe.stdout.split()[1], 16) & (1 << (signal.SIGINT - 1))
    process = emulate("--source", "imds", "--format", "json", shell_background=True)
    document = process.document()
    emulator_pid = document["pid"]
    assert emulator_pid != process.process.pid  # the shell's background job, SIGINT ignored on entry

    os.kill(emulator_pid, signal.SIGINT)
    _, err = process.finish()

    assert process.process.returncode == EXIT_OK  # the shell's `wait` returned: the emulator has exited
    assert "# stopped (SIGINT)" in err


def test_a_second_instance_on_a_busy_port_says_so(emulate: Any) -> None:
    first = emulate("--source", "imds", "--format", "json")
    url = first.document()["url"]
    port = urlsplit(url).port
    assert port is not None

    second = emulate("--source", "imds", "--port", str(port))
    out, err = second.finish()

    assert second.process.returncode == EXIT_USAGE
    assert out == ""
    assert f"cannot listen on 127.0.0.1:{port}: the port is already in use" in err
    assert "another emulator" in err
    assert imds_get(url)[0] == 200  # the first one serves on


class LineReader:
    """Reads a pipe's lines on a thread, so the test can wait for one with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[Optional[str]] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, predicate: Any, timeout: float = LINE_TIMEOUT) -> str:
        """The first line (from now on) for which ``predicate`` holds; fails on EOF or timeout."""
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                pytest.fail(f"no matching line within {timeout} s; seen: {self.seen!r}")
            if line is None:
                pytest.fail(f"stream ended without a matching line; seen: {self.seen!r}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self) -> list[str]:
        self._thread.join(LINE_TIMEOUT)
        lines = []
        while not self.lines.empty():
            line = self.lines.get_nowait()
            if line is not None:
                lines.append(line)
        return lines


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def start_process() -> Iterator[Any]:
    """Start subprocesses and make sure none outlives its test."""
    started: list[subprocess.Popen[str]] = []

    def start(argv: list[str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(),
            # A shell running pytest in the background ignores SIGINT, and the child would inherit that: Ctrl-C
            # (the SIGINT a test sends) must reach it whatever the parent ignores.
            preexec_fn=_default_sigint if os.name == "posix" else None,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(SUBPROCESS_TIMEOUT)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child process is POSIX")
@pytest.mark.parametrize(
    ("source", "path"),
    [
        ("app_service", "/msi/token"),
        ("azure_arc", "/metadata/identity/oauth2/token"),
        ("imds", "/metadata/identity/oauth2/token"),
    ],
)
def test_emulate_in_the_foreground_serves_logs_and_stops_on_ctrl_c(
    start_process: Any, source: str, path: str
) -> None:
    process = start_process([sys.executable, "-m", "msi_credential", "emulate", "--source", source])
    out, err = LineReader(process.stdout), LineReader(process.stderr)

    out.until(lambda line: line.startswith(f"# {source} emulator listening at http"))
    environ: dict[str, str] = {}
    while True:
        line = out.until(lambda line: True)
        if line.startswith("export "):
            name, _, value = line[len("export ") :].partition("=")
            [environ[name]] = shlex.split(value)
        elif line.startswith("# Ctrl-C (or kill "):
            break
    assert environ
    assert set(environ) <= set(MANAGED_IDENTITY_VARIABLES)

    # Azure Arc included: the key files are in the agent's directory, where the credential looks by default.
    credential = ManagedIdentityCredential(_environ=environ, share_cache=False)
    with credential:
        assert credential.source.value == source
        token = credential.get_token(STORAGE)
    assert decode_jwt(token.token)["aud"] == "https://storage.azure.com"
    err.until(lambda line: line.endswith(f"GET {path} -> 200"))

    process.send_signal(signal.SIGINT)
    assert process.wait(SUBPROCESS_TIMEOUT) == EXIT_OK
    assert "# stopped (SIGINT); the files it wrote are removed" in out.rest()
    assert not any("Traceback" in line for line in err.rest())


def test_emulate_in_process_with_a_user_assigned_identity(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    buffer = io.StringIO()
    results: list[str] = []

    def serve_once(stop: Any) -> None:
        """Stands in for the foreground wait: get a token through the printed exports, then return (stop)."""
        lines = buffer.getvalue().splitlines()
        environ = {}
        for line in lines:
            if line.startswith("export "):
                name, _, value = line[len("export ") :].partition("=")
                [environ[name]] = shlex.split(value)
        with ManagedIdentityCredential(
            _environ=environ, share_cache=False, client_id=IDENTITY.client_id, _sleep=lambda seconds: None
        ) as credential:
            results.append(credential.get_token(STORAGE).token)

    monkeypatch.setattr(emulator_cli, "wait_until_stopped", serve_once)
    emulator_logger = logging.getLogger("msi_credential.emulator")
    level = emulator_logger.level
    argv = ["emulate", "--source", "app_service", "--identity", f"{IDENTITY.client_id},{IDENTITY.object_id}"]

    assert main(argv, stdout=buffer) == EXIT_OK

    [token] = results
    assert decode_jwt(token)["oid"] == IDENTITY.object_id
    assert buffer.getvalue().splitlines()[-1] == "# stopped (stop requested); the files it wrote are removed"
    assert "GET /msi/token -> 200" in capsys.readouterr().err
    assert emulator_logger.handlers == []  # main() can run again in this process
    assert emulator_logger.level == level


def test_emulate_on_a_port_in_use_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(stop: Any) -> None:  # should the port bind after all: stop instead of serving forever
        return None

    monkeypatch.setattr(emulator_cli, "wait_until_stopped", interrupt)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        code, out = run(["emulate", "--port", str(port)])

    assert code == EXIT_USAGE
    assert out == ""
    assert f"msi-credential emulate: error: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert logging.getLogger("msi_credential.emulator").handlers == []


def test_stop_signal_handlers_are_put_back_after_an_in_process_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from msi_credential.emulator import _cli

    before = {number: signal.getsignal(number) for number in _cli._STOP_SIGNALS}
    seen: list[Any] = []
    monkeypatch.setattr(
        _cli, "wait_until_stopped", lambda stop: seen.append(signal.getsignal(signal.SIGTERM))
    )

    assert main(["emulate", "--source", "imds", "--format", "json"], stdout=io.StringIO()) == EXIT_OK

    assert callable(seen[0]) and seen[0] is not before[signal.SIGTERM]
    assert {number: signal.getsignal(number) for number in _cli._STOP_SIGNALS} == before


# ---------------------------------------------------------------------------------------------- scripting


def test_fail_sequence_then_success_and_lifetime_and_latency_from_the_command_line(emulate: Any) -> None:
    process = emulate(
        "--source", "imds", "--format", "json", "--fail", "503,429", "--lifetime", "120", "--latency", "0.05"
    )
    document = process.document()
    assert document["fail"] == [503, 429] and document["latency"] == 0.05 and document["lifetime"] == 120
    url = document["url"]

    statuses = [imds_get(url)[0] for _ in range(2)]
    status, body = imds_get(url)

    assert statuses == [503, 429]
    assert status == 200
    assert body["expires_in"] == "120"


def test_several_identities_from_the_command_line(emulate: Any) -> None:
    other = (str(uuid.uuid4()), str(uuid.uuid4()))
    process = emulate(
        "--source",
        "imds",
        "--format",
        "json",
        "--identity",
        ",".join(USER),
        "--identity",
        ",".join(other),
        "--client-id",
        "12345678-0000-0000-0000-000000000000",
    )
    document = process.document()
    url = document["url"]

    answers = [
        imds_get(url, {"api-version": "2018-02-01", "resource": RESOURCE, "client_id": client_id})
        for client_id in (USER[0], other[0])
    ]
    _, system = imds_get(url)

    assert [decode_jwt(body["access_token"])["appid"] for _, body in answers] == [USER[0], other[0]]
    assert decode_jwt(system["access_token"])["appid"] == "12345678-0000-0000-0000-000000000000"


# ---------------------------------------------------------------------------------------------- our own CLI


def run_token(env: dict[str, str], *extra: str) -> dict[str, Any]:
    """``msi-credential token --json --decode`` with the emulator's variables; returns the claims only."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "msi_credential",
            "token",
            RESOURCE + "/.default",
            "--json",
            "--decode",
            *extra,
        ],
        capture_output=True,
        text=True,
        env={**clean_environment(), **env},
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == EXIT_OK, result.stderr[-2000:]
    return dict(json.loads(result.stdout)["claims"])


def test_our_token_command_works_unchanged_against_azure_arc_in_the_agents_directory(emulate: Any) -> None:
    existed = os.path.isdir(ARC_KEY_DIRECTORY)
    before = set(os.listdir(ARC_KEY_DIRECTORY)) if existed else set()
    process = emulate("--source", "azure_arc", "--format", "json", "--identity", ",".join(USER))
    document = process.document()

    system = run_token(document["env"])
    user = run_token(document["env"], "--client-id", USER[0])

    assert system["appid"] == document["system_identity"]["client_id"]
    assert user["appid"] == USER[0]
    process.process.send_signal(signal.SIGTERM)
    process.finish()
    assert os.path.isdir(ARC_KEY_DIRECTORY) == existed  # made only if missing, and then removed again
    if existed:
        assert set(os.listdir(ARC_KEY_DIRECTORY)) <= before  # its key files are gone, nobody else's


def test_our_token_command_works_against_workload_identity_over_https(emulate: Any) -> None:
    process = emulate("--source", "workload_identity", "--format", "json")
    document = process.document()

    claims = run_token(document["env"])

    assert claims["aud"] == RESOURCE
    assert claims["appid"] == document["env"]["AZURE_CLIENT_ID"]


def test_arc_directory_it_may_not_write_is_a_clear_error_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setattr(emulator_package, "ARC_KEY_DIRECTORY", str(blocker / "tokens"))

    code = main(["emulate", "--source", "azure_arc"])

    captured = capsys.readouterr()
    assert code == EXIT_USAGE
    assert captured.out == ""
    assert (
        f"msi-credential emulate: error: cannot write Azure Arc key files in {blocker / 'tokens'}"
        in captured.err
    )
    assert "run the emulator with the rights to write there" in captured.err


def test_missing_emulator_extra_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)

    code = main(["emulate", "--source", "workload_identity"])

    assert code == EXIT_USAGE
    assert "pip install 'msi-credential[emulator]'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- scenarios


def test_a_scenario_from_the_command_line_composes_with_fail(emulate: Any) -> None:
    process = emulate("--scenario", "imds_throttling", "--fail", "503", "--format", "json")

    document = process.document()
    statuses = [imds_get(document["url"])[0] for _ in range(4)]

    assert document["scenario"] == "imds_throttling"
    assert document["source"] == "imds"
    assert statuses == [503, 429, 429, 200]  # --fail first, then the scenario, then tokens


def test_a_scenario_picks_its_own_source_and_refuses_another(emulate: Any) -> None:
    starting = emulate("--scenario", "container_apps_starting", "--format", "json").document()
    refused = emulate("--scenario", "expired_federated_token", "--source", "imds")

    assert starting["source"] == "app_service"
    _out, err = refused.finish()
    assert refused.process.returncode == 2
    assert "expired_federated_token is an incident of workload_identity" in err


def test_an_unknown_scenario_is_refused_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["emulate", "--scenario", "no_such_incident"])


def test_the_shell_form_says_which_incident_it_plays(emulate: Any) -> None:
    lines = emulate("--scenario", "slow_endpoint", "--latency", "0.5").lines_until_ready()

    assert "# scenario slow_endpoint: the endpoint answers, but only after seconds (docs/testing.md)" in lines
    assert "# every answer waits 0.5 s" in lines


def test_the_shell_form_of_an_expired_assertion_does_not_call_it_fresh(emulate: Any) -> None:
    lines = emulate("--scenario", "expired_federated_token").lines_until_ready()

    assert not any("fresh client assertion" in line for line in lines)
    assert any("the federated token file holds an expired client assertion" in line for line in lines)
