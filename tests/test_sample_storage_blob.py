"""samples/storage_blob.py runs end to end against Azurite (a subprocess, behind a loopback-only socket guard)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .e2e.conftest import LOOPBACK_GUARD, REPO_ROOT, require_azurite_installed

pytestmark = pytest.mark.e2e

SAMPLE = REPO_ROOT / "samples" / "storage_blob.py"
TIMEOUT = 120  # Azurite start-up (up to 30 s) plus a few local requests


def run_sample(*args: str) -> subprocess.CompletedProcess[str]:
    runner = LOOPBACK_GUARD + (
        "import runpy, sys\n"
        f"sys.argv = [{str(SAMPLE)!r}, *{list(args)!r}]\n"
        f"runpy.run_path({str(SAMPLE)!r}, run_name='__main__')\n"
    )
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IDENTITY_", "MSI_", "IMDS_", "AZURE_"))
    }
    environment["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-c", runner],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.mark.parametrize("source", ["imds", "app_service"])
def test_sample_runs_against_azurite(source: str) -> None:
    require_azurite_installed()
    result = run_sample("--source", source)
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


def test_sample_says_what_to_do_without_azurite(tmp_path: Path) -> None:
    result = run_sample("--azurite", str(tmp_path / "azurite-blob"))
    assert result.returncode == 2
    assert "Azurite is not installed" in result.stderr
    assert "npm ci" in result.stderr
    assert result.stdout == ""
