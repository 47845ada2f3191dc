"""Hand-off from test_cli_az.py (to fold into tests/test_samples.py): every sample and the benchmark answer
--help without running, and the benchmark without the dev extra says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from msi_credential.cli import EXIT_USAGE

from .cli.conftest import SUBPROCESS_TIMEOUT, clean_environment

ROOT = Path(__file__).resolve().parent.parent
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
