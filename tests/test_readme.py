"""What a newcomer pastes from the README works: the in-process emulator example runs, every ``msi-credential``
command line in it is accepted by the parser, and the commands that need something say so."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from msi_credential.cli import build_parser

from .subprocesses import child_environment, run

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BLOCKS = re.findall(r"```(\w*)\n(.*?)```", README, flags=re.DOTALL)


def command_lines() -> list[str]:
    """Every ``msi-credential ...`` line of the README's bash blocks, comments removed."""
    lines = []
    for language, body in BLOCKS:
        if language != "bash":
            continue
        for line in body.splitlines():
            line = line.split("#", 1)[0].strip()
            for part in line.split("&&"):
                part = part.strip().removesuffix("&").strip()  # started in the background
                if re.match(r"^(\.venv/bin/)?msi-credential\s", part):
                    lines.append(part)
    return lines


def test_the_readme_shows_msi_credential_commands() -> None:
    assert len(command_lines()) >= 4


@pytest.mark.parametrize("line", command_lines())
def test_every_command_line_in_the_readme_is_accepted(line: str) -> None:
    argv = shlex.split(line)[1:]

    arguments = build_parser().parse_args(argv)  # argparse exits with 2 on anything it refuses

    assert arguments.command in {"token", "detect", "emulate", "demo"}


def test_the_in_process_emulator_example_runs_as_pasted() -> None:
    [example] = [body for language, body in BLOCKS if language == "python" and "Emulator(" in body]

    result = run(
        [sys.executable, "-c", example],
        cwd=ROOT.parent,  # not the checkout: the installed package
        env=child_environment(),
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert "RecordedRequest(method='GET', path='/metadata/identity/oauth2/token'" in result.stdout


def test_the_install_section_says_there_is_no_release_yet() -> None:
    install = README.split("## Install", 1)[1].split("\n## ", 1)[0]

    assert "not published on PyPI yet" in install
    assert "pip install -e ." in install
    assert "python -m build" in install
    assert "dist/msi_credential-*.whl" in install


def test_the_commands_that_need_more_than_the_package_say_so() -> None:
    benchmarks = README.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    samples = README.split("## Samples", 1)[1].split("\n## ", 1)[0]

    assert 'pip install -e ".[dev]"' in benchmarks
    for sample in sorted(path.name for path in (ROOT / "samples").glob("*.py")):
        assert f"python samples/{sample}" in samples, f"{sample} is not listed in the README's Samples"
    assert "npm ci" in samples
