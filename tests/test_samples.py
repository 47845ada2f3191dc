"""Every sample runs standalone, as a user would run it: ``python samples/<name>.py``, with a timeout.

samples/storage_blob.py runs end to end against Azurite (marked e2e), behind a loopback-only socket guard.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from msi_credential.cli import EXIT_USAGE

from .cli.conftest import SUBPROCESS_TIMEOUT, clean_environment
from .e2e.conftest import LOOPBACK_GUARD, require_azurite_installed
from .subprocesses import child_environment, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
TIMEOUT = 90.0
AZURITE_TIMEOUT = 120.0  # Azurite start-up (up to 30 s) plus a few local requests

# sample -> lines (or line fragments) its output must show
TELLTALES = {
    "get_token.py": [
        "no managed identity variables set: using the local IMDS emulator at http://127.0.0.1:",
        "source:     imds",
        "got a Bearer token for https://storage.azure.com/.default (",
        "expires:    ",
        "refresh at: ",
    ],
    "user_assigned.py": [
        "client_id=...          appid=0d3a6f0e-5a6b-4c7d-8e9f-0a1b2c3d4e5f",
        "unknown client_id      unavailable (identity_not_found), as expected",
        "user-assigned identity selected by client id, object id and resource id",
    ],
    "async_get_token.py": [
        "no managed identity variables set: using the local IMDS emulator",
        "10 concurrent get_token calls -> one token",
        "token requests the emulator received: 1",
    ],
    "key_vault.py": [
        "secret db-password = 'correct-horse-battery-staple (a sample value)'",
        "token requests the emulator received: 1 (for 3 reads)",
        "token audience https://vault.azure.net, tenant ",
        "after a CAE claims challenge: read again with a fresh token (token requests: 2)",
    ],
}


def run_sample(
    name: str, *args: str, env: dict[str, str] | None = None, prelude: str = "", timeout: float = TIMEOUT
) -> Any:
    path = SAMPLES / name
    if prelude:  # run the file as __main__ after some setup, e.g. hiding an optional dependency
        command = [
            sys.executable,
            "-c",
            f"{prelude}\nimport runpy, sys\nsys.argv = {[str(path), *args]!r}\n"
            f"runpy.run_path({str(path)!r}, run_name='__main__')",
        ]
    else:
        command = [sys.executable, str(path), *args]
    return run(command, cwd=ROOT, env=child_environment() if env is None else env, timeout=timeout)


@pytest.mark.parametrize("name", sorted(TELLTALES))
def test_sample_runs_and_says_what_it_did(name: str) -> None:
    result = run_sample(name)

    assert result.returncode == 0, result.stdout + result.stderr
    for telltale in TELLTALES[name]:
        assert telltale in result.stdout, result.stdout
    assert "Traceback" not in result.stderr
    assert "eyJ" not in result.stdout  # no JWT (the base64 of '{"') is ever printed


@pytest.mark.parametrize("name", sorted(path.name for path in SAMPLES.glob("*.py")))
def test_sample_has_a_docstring_saying_how_to_run_it_and_a_main(name: str) -> None:
    module = ast.parse((SAMPLES / name).read_text(encoding="utf-8"))
    docstring = ast.get_docstring(module)
    assert docstring, f"{name} has no module docstring"
    assert f"python samples/{name}" in docstring
    mains = [node for node in module.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
    assert mains, f"{name} has no main()"
    returns = mains[0].returns
    assert returns is not None and ast.unparse(returns) == "int", f"{name}: main() must return an int"
    assert 'if __name__ == "__main__":' in (SAMPLES / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("get_token.py", "source:     app_service"), ("async_get_token.py", "source:   app_service")],
)
def test_sample_uses_the_real_environment_when_it_is_set(
    emulator_factory: Any, name: str, expected: str
) -> None:
    emulator = emulator_factory("app_service")

    result = run_sample(name, env=child_environment(emulator.environ))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "emulator" not in result.stdout
    assert expected in result.stdout
    assert len(emulator.requests) == 1


def test_async_sample_without_aiohttp() -> None:
    result = run_sample("async_get_token.py", prelude="import sys\nsys.modules['aiohttp'] = None")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "10 concurrent get_token calls -> one token" in result.stdout


# Serving HTTPS takes a per-run CA, which comes from the emulator extra (trustme): only these samples may use it.
NEEDS_EMULATOR_EXTRA = {"key_vault.py"}


def test_samples_need_neither_azure_identity_nor_trustme_unless_they_serve_https() -> None:
    for name in sorted(TELLTALES):
        blocked = (
            ("azure.identity", "pytest")
            if name in NEEDS_EMULATOR_EXTRA
            else ("trustme", "azure.identity", "pytest")
        )
        prelude = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None"
        result = run_sample(name, prelude=prelude)
        assert result.returncode == 0, f"{name}: {result.stdout}{result.stderr}"


# A meta path finder that answers for a package as if it were not installed (ModuleNotFoundError, as the import
# system raises it), before any real finder sees the name: the sample runs as on a machine without that package.
NOT_INSTALLED = """
import sys

class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name == {blocked!r} or name.startswith({blocked!r} + "."):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""


@pytest.mark.parametrize("args", [("--help",), ()], ids=["help", "plain"])
@pytest.mark.parametrize(
    ("name", "blocked", "package"),
    [
        ("key_vault.py", "azure.keyvault", "azure-keyvault-secrets"),
        ("key_vault.py", "trustme", "trustme"),
        ("storage_blob.py", "azure.storage.blob", "azure-storage-blob"),
    ],
)
def test_sample_without_its_client_library_says_which_package_to_install(
    name: str, blocked: str, package: str, args: tuple[str, ...]
) -> None:
    result = run_sample(name, *args, prelude=NOT_INSTALLED.format(blocked=blocked))

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert package in result.stderr.partition("pip install ")[2].split(), result.stderr


# ----------------------------------------------------------------------------------- storage_blob.py on Azurite


def run_storage_blob_sample(*args: str) -> Any:
    """samples/storage_blob.py in a child process with the loopback socket guard, without any Azure variable."""
    environment = child_environment(
        {"PYTHONPATH": str(ROOT)}, drop_prefixes=("IDENTITY_", "MSI_", "IMDS_", "AZURE_")
    )
    return run_sample(
        "storage_blob.py", *args, env=environment, prelude=LOOPBACK_GUARD, timeout=AZURITE_TIMEOUT
    )


@pytest.mark.e2e
@pytest.mark.parametrize("source", ["imds", "app_service"])
def test_sample_runs_against_azurite(source: str) -> None:
    require_azurite_installed()
    result = run_storage_blob_sample("--source", source)
    assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    lines = result.stdout.splitlines()
    steps = [line.split()[0:2] for line in lines]
    assert ["created", "container"] in steps
    assert ["deleted", "container"] in steps
    assert sum(line.startswith("uploaded") for line in lines) == 2
    assert sum(line.startswith("downloaded") and "content matches" in line for line in lines) == 2
    assert sum(line.startswith("deleted ") and "container" not in line for line in lines) == 2
    assert any(line.startswith("listed") and "hello.txt" in line for line in lines)
    assert f"{source} emulator" in result.stdout
    assert lines[-1].startswith("tokens issued      1 ")


@pytest.mark.e2e
def test_sample_says_what_to_do_without_azurite(tmp_path: Path) -> None:
    result = run_storage_blob_sample("--azurite", str(tmp_path / "azurite-blob"))
    assert result.returncode == 2
    assert "Azurite is not installed" in result.stderr
    assert "npm ci" in result.stderr
    assert result.stdout == ""


# Every sample and the benchmark answer --help without running, and the benchmark without the dev extra says what to
# install.

BENCHMARK = ROOT / "benchmarks" / "compare.py"


def run_python(*argv: str) -> subprocess.CompletedProcess[str]:
    """``python *argv`` from the repository's root, in a clean environment (tests/cli/conftest.py)."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=ROOT,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("name", sorted(path.name for path in (ROOT / "samples").glob("*.py")))
def test_every_sample_answers_help_without_running(name: str) -> None:
    result = run_python(str(ROOT / "samples" / name), "--help")

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: ")
    assert "emulator at" not in result.stdout  # it helped; it did not run


def run_benchmark_without_the_dev_extra(*argv: str) -> subprocess.CompletedProcess[str]:
    """benchmarks/compare.py with ``argv``, azure-identity (the dev extra) made impossible to import."""
    code = (
        "import sys\nsys.modules['azure.identity'] = None\nimport runpy\n"
        f"sys.argv = [{str(BENCHMARK)!r}, *{list(argv)!r}]\nrunpy.run_path({str(BENCHMARK)!r}, run_name='__main__')"
    )
    return run_python("-c", code)


def test_benchmark_without_the_dev_extra_says_what_to_install() -> None:
    result = run_benchmark_without_the_dev_extra("--quick")

    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "azure-identity" in result.stderr
    assert 'pip install -e ".[dev]"' in result.stderr


def test_benchmark_help_works_without_the_dev_extra() -> None:
    result = run_benchmark_without_the_dev_extra("--help")

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ")
