"""Other people's managed identity clients against the emulator, as a developer would use it.

Each source's emulator is started through its command line (``msi-credential emulate --format json``, a subprocess)
and each client runs in a subprocess of its own, configured only by the variables that the emulator printed:
azure-identity's ManagedIdentityCredential (sync and async) and msal-python's ManagedIdentityClient
(tests/interop/python_client.py), @azure/identity's ManagedIdentityCredential and @azure/msal-node's
ManagedIdentityApplication (tests/interop/node_client.mjs, run by node), and ours. Each asks for the system-assigned
identity and for a user-assigned one by client id, and each token must be a JWT whose ``aud`` is the resource and
whose ``appid`` is the identity asked for. Where a client refuses a combination by its own design, the test asserts
that refusal (by its message) instead of skipping.

Traffic stays on loopback: every client process has a guard that refuses any other connection (and says so on
stderr), proxies are cleared, and AZURE_POD_IDENTITY_AUTHORITY_HOST points at a closed loopback port whenever the
source is not IMDS, so that no fallback can reach 169.254.169.254. NODE_TLS_REJECT_UNAUTHORIZED is never set: the
clients trust the emulator's per-run CA through the variables it printed.

Missing node, node_modules (``npm ci``) or a Python client package skips these tests locally and fails them when CI
is set.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest

from ..conftest import FIGURES
from ..skips import skip_or_fail_in_ci
from ..subprocesses import child_environment, run

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
RESOURCE = "https://storage.azure.com"
USER = ("5a0d6f1e-1b7a-4c1e-9a57-3f1f8c1f4e01", "9b2f61e4-5d1c-4a7e-8f33-2c6a1d9e7b02")
USER_RESOURCE_ID = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/interop/providers/"
    "Microsoft.ManagedIdentity/userAssignedIdentities/interop"
)
# `msi-credential emulate --source azure_arc` writes its key files in the Arc agent's own directory
# (/var/opt/azcmagent/tokens), which clients read and tests compare: under pytest-xdist (`--dist loadgroup`,
# as CI runs it) every test of this module runs on one worker, one after another.
pytestmark = pytest.mark.xdist_group("arc_agents_directory")

START_TIMEOUT = 30.0
CLIENT_TIMEOUT = 120.0
GUARD_REFUSED = "INTEROP-GUARD-REFUSED"

SOURCES = [
    "imds",
    "app_service",
    "azure_arc",
    "cloud_shell",
    "service_fabric",
    "machine_learning",
    "workload_identity",
]
PYTHON_CLIENTS = ["azure-identity", "azure-identity-async", "msal", "msi-credential"]
NODE_CLIENTS = ["@azure/identity", "@azure/msal-node"]
CLIENTS = [
    "azure-identity",
    "azure-identity-async",
    "msal",
    "@azure/identity",
    "@azure/msal-node",
    "msi-credential",
]

TOKEN = "token"  # a token for the identity asked for
CONFIGURED = (
    "configured"  # a token for the identity the host configured: the client drops the selector by design
)
# Anything else: refused, and the error must match this pattern (the client's own words for its design).
_SF_RUNTIME = r"not supported by the Service Fabric managed identity environment"
_NO_SUCH_SOURCE_PY = r"Connection ?refused|ConnectionError"  # falls back to IMDS, here a closed loopback port
_NO_SUCH_SOURCE_JS = r"fetch failed|network_error|ECONNREFUSED"

_NO_USER_ASSIGNED = r"does not support a user-assigned identity"

# Where a client does not get a token for each identity asked for:
# DEVIATIONS[client][source] = (system-assigned, user-assigned by client id)
DEVIATIONS: dict[str, dict[str, tuple[str, str]]] = {
    "azure-identity": {
        "cloud_shell": (TOKEN, r"client_id should not be set for cloud shell managed identity"),
        "service_fabric": (TOKEN, _SF_RUNTIME),
    },
    # msal-python's ManagedIdentityClient has no Cloud Shell source: it asks IMDS. Neither MSAL's managed identity
    # client has a workload identity source: both ask IMDS.
    "msal": {
        "cloud_shell": (_NO_SUCH_SOURCE_PY, _NO_SUCH_SOURCE_PY),
        # "configured in the cluster, not during runtime": the selector is ignored
        "service_fabric": (TOKEN, CONFIGURED),
        "workload_identity": (_NO_SUCH_SOURCE_PY, _NO_SUCH_SOURCE_PY),
    },
    "@azure/identity": {
        "cloud_shell": (TOKEN, r"not supported for CloudShell at runtime"),
        "service_fabric": (TOKEN, r"is not supported by the Service Fabric managed identity environment"),
    },
    "@azure/msal-node": {
        "cloud_shell": (TOKEN, CONFIGURED),
        "service_fabric": (TOKEN, CONFIGURED),
        "workload_identity": (_NO_SUCH_SOURCE_JS, _NO_SUCH_SOURCE_JS),
    },
    "msi-credential": {
        "cloud_shell": (TOKEN, _NO_USER_ASSIGNED),
        "service_fabric": (TOKEN, _NO_USER_ASSIGNED),
    },
}
DEVIATIONS["azure-identity-async"] = DEVIATIONS["azure-identity"]  # the same library's other face

# EXPECTED[source][client] = (system-assigned, user-assigned by client id)
EXPECTED: dict[str, dict[str, tuple[str, str]]] = {
    source: {client: DEVIATIONS[client].get(source, (TOKEN, TOKEN)) for client in CLIENTS}
    for source in SOURCES
}

MATRIX: dict[tuple[str, str], tuple[str, str]] = {}


def _missing_requirement(client: str) -> Optional[str]:
    if client in NODE_CLIENTS:
        if shutil.which("node") is None:
            return "node is not installed"
        package = REPO_ROOT / "node_modules" / Path(*client.split("/"))
        if not package.is_dir():
            return f"{client} is not in node_modules (run npm ci)"
        return None
    modules = {
        "azure-identity": ["azure.identity"],
        "azure-identity-async": ["azure.identity", "aiohttp"],
        "msal": ["msal"],
        "msi-credential": ["msi_credential"],
    }[client]
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"the Python package {module} is not installed (pip install -e '.[dev]')"
    return None


def _require(client: str) -> None:
    problem = _missing_requirement(client)
    if problem is None:
        return
    skip_or_fail_in_ci(f"interop test: {problem}")


# Besides the managed identity and proxy variables: the CA and TLS settings (the clients trust the emulator's CA
# through what it printed, and nothing else), node's options, and Azure PowerShell's host marker.
_DROPPED = (
    *(
        "NODE_EXTRA_CA_CERTS",
        "NODE_TLS_REJECT_UNAUTHORIZED",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ),
    *("CURL_CA_BUNDLE", "NODE_OPTIONS", "AZUREPS_HOST_ENVIRONMENT", "PYTHONUNBUFFERED"),
)


def base_environment() -> dict[str, str]:
    """This process's environment without managed identity, Azure, proxy and CA variables."""
    return child_environment(drop=_DROPPED, drop_prefixes=("AZURE_", "MSAL_", "IDENTITY_", "MSI_"))


class RunningEmulator:
    """``msi-credential emulate --format json`` in a subprocess, and the document it printed."""

    def __init__(self, source: str) -> None:
        self.source = source
        argv = [
            sys.executable,
            "-m",
            "msi_credential",
            "emulate",
            "--source",
            source,
            "--format",
            "json",
            "--identity",
            f"{USER[0]},{USER[1]},{USER_RESOURCE_ID}",
        ]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=base_environment()
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            _, err = self.process.communicate(timeout=START_TIMEOUT)
            pytest.fail(f"msi-credential emulate --source {source} did not start: {err[-2000:]}")
        self.document: dict[str, Any] = json.loads(line)

    @property
    def system_client_id(self) -> str:
        return str(self.document["system_identity"]["client_id"])

    def stop(self) -> str:
        self.process.terminate()
        _, err = self.process.communicate(timeout=START_TIMEOUT)
        return err


@pytest.fixture(scope="module")
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening) for as long as the tests run."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def emulators() -> Iterator[dict[str, RunningEmulator]]:
    running: dict[str, RunningEmulator] = {}
    yield running
    for emulator in running.values():
        err = emulator.stop()
        assert emulator.process.returncode == 0, err[-2000:]
        assert "Traceback" not in err
    _record_matrix()


def _emulator(emulators: dict[str, RunningEmulator], source: str) -> RunningEmulator:
    if source not in emulators:
        emulators[source] = RunningEmulator(source)
    return emulators[source]


def client_environment(emulator: RunningEmulator, closed_port: int) -> dict[str, str]:
    env = base_environment()
    # Any fallback to IMDS (a client that does not know the source) stays on loopback and is refused.
    env["AZURE_POD_IDENTITY_AUTHORITY_HOST"] = f"http://127.0.0.1:{closed_port}"
    env.update(emulator.document["env"])  # what the emulator printed, and nothing else
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in env
    return env


def run_client(client: str, env: dict[str, str], identities: list[str]) -> tuple[list[dict[str, Any]], str]:
    if client in NODE_CLIENTS:
        argv = ["node", "--require", str(HERE / "guard.cjs"), str(HERE / "node_client.mjs"), client, RESOURCE]
    else:
        argv = [sys.executable, str(HERE / "python_client.py"), client, RESOURCE]
    result = run([*argv, *identities], env=env, cwd=REPO_ROOT, timeout=CLIENT_TIMEOUT)
    assert result.returncode == 0, f"{client} exited {result.returncode}: {result.stderr[-2000:]}"
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return lines, result.stderr


def _verdict(result: dict[str, Any], expected: str, asked: str, configured: str) -> str:
    """Check one result against the expectation; returns the matrix cell."""
    if expected in (TOKEN, CONFIGURED):
        assert result["ok"], f"expected a token, got: {result.get('error')}"
        assert result["aud"] == RESOURCE
        if expected == TOKEN:
            assert result["appid"] == asked
            return "token"
        assert result["appid"] == configured  # the host's identity: the selector is dropped by design
        return "host's identity"
    assert not result["ok"], "expected the client to refuse this combination, it got a token"
    assert re.search(expected, result["error"]), result["error"]
    return "refused"


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("source", SOURCES)
def test_client_gets_tokens_from_the_command_line_emulator(
    source: str, client: str, emulators: dict[str, RunningEmulator], closed_port: int
) -> None:
    _require(client)
    emulator = _emulator(emulators, source)
    system_expected, user_expected = EXPECTED[source][client]

    results, err = run_client(client, client_environment(emulator, closed_port), ["-", USER[0]])

    assert GUARD_REFUSED not in err, f"{client} tried to leave loopback: {err[-2000:]}"
    connects = re.search(r"INTEROP-GUARD-CONNECTS (\d+)", err)
    assert connects is not None and int(connects.group(1)) >= 1, "the loopback guard saw no connection"
    system, user = results
    cells = (
        _verdict(system, system_expected, emulator.system_client_id, emulator.system_client_id),
        _verdict(user, user_expected, USER[0], emulator.system_client_id),
    )
    MATRIX[(source, client)] = cells


def _record_matrix() -> None:
    if not MATRIX:
        return
    width = 22
    FIGURES.append(
        "source x client (system-assigned / user-assigned by client id), emulator run as a command:"
    )
    FIGURES.append("".ljust(18) + "".join(client.ljust(width) for client in CLIENTS))
    short = {"token": "token", "host's identity": "host id", "refused": "refused"}
    for source in SOURCES:
        cells = []
        for client in CLIENTS:
            pair = MATRIX.get((source, client))
            cells.append((f"{short[pair[0]]} / {short[pair[1]]}" if pair else "-").ljust(width))
        FIGURES.append(source.ljust(18) + "".join(cells))
    FIGURES.append(
        "token: a JWT with aud = resource and appid = the identity asked for; host id: a token for the identity "
        "the host configured (the client drops the selector by design); refused: the client refuses by design"
    )
