"""Every file the code, the tests, the samples, the CHANGELOG, the README and the docs refer to exists in the
repository, and every "docs/protocols.md section N" names a section that is there.

What counts as a reference: a Markdown file name (``something.md``, with or without a directory), a path that
starts with one of the repository's own top-level directories (``msi_credential/``, ``tests/``, ``docs/``, ...),
and a relative Markdown link target. Web addresses are left out (they are not files of this repository); so are
names with a placeholder or a wildcard (``tests/test_credential_<name>.py``, ``samples/*.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OWN_DIRECTORIES = ("msi_credential", "tests", "samples", "benchmarks", "docs", ".ci")
SKIPPED_DIRECTORIES = {".git", ".venv", "node_modules", "build", "dist", "__pycache__", ".mypy_cache"}

_URL = re.compile(r"\b(?:https?|file)://[^\s)>\]\"'`]+")
_MARKDOWN_NAME = re.compile(r"(?<![\w./-])((?:[\w.-]+/)*[\w.-]*[A-Za-z0-9_]\.md)\b")
_OWN_PATH = re.compile(
    r"(?<![\w./-])((?:" + "|".join(re.escape(name) for name in OWN_DIRECTORIES) + r")/[\w./-]*)"
)
_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
_SECTION = re.compile(r"docs/protocols\.md,? sections? ((?:\d+)(?:(?:, | and |, and )\d+)*)")
_PLACEHOLDER_AFTER = ("<", "{", "*", "$")


def scanned_files() -> list[Path]:
    """The text the issue names: code, tests, samples, benchmarks, CI, the CHANGELOG, the README and the docs."""
    found: list[Path] = [path for path in ROOT.glob("*.md") if path.is_file()]
    for directory in OWN_DIRECTORIES:
        base = ROOT / directory
        if not base.is_dir():
            continue
        for path in base.rglob("*"):
            if any(part in SKIPPED_DIRECTORIES for part in path.relative_to(ROOT).parts):
                continue
            if path == Path(__file__).resolve():
                continue  # this checker's own examples are missing on purpose
            if path.is_file() and (path.suffix in {".py", ".md"} or path.name == "run"):
                found.append(path)
    return sorted(found)


def _exists(target: str, referrer: Path) -> bool:
    target = target.rstrip(".,;:")
    if not target:
        return True
    candidates = [ROOT / target, referrer.parent / target]
    return any(candidate.exists() for candidate in candidates)


def missing_references(text: str, referrer: Path) -> list[str]:
    """The references in ``text`` (written in ``referrer``) that point to no file of the repository."""
    text = _URL.sub(" ", text)
    missing: list[str] = []
    for pattern in (_MARKDOWN_NAME, _OWN_PATH, _LINK):
        for match in pattern.finditer(text):
            target = match.group(1)
            following = text[match.end(1) : match.end(1) + 1]
            if following in _PLACEHOLDER_AFTER or any(mark in target for mark in _PLACEHOLDER_AFTER):
                continue
            if pattern is _OWN_PATH and target.rstrip("/") in OWN_DIRECTORIES:
                continue
            if not _exists(target, referrer):
                missing.append(target.rstrip(".,;:"))
    return list(dict.fromkeys(missing))


def protocol_sections() -> set[int]:
    text = (ROOT / "docs" / "protocols.md").read_text(encoding="utf-8")
    return {int(number) for number in re.findall(r"^## (\d+)\. ", text, flags=re.MULTILINE)}


def cited_sections(text: str) -> list[int]:
    numbers: list[int] = []
    for match in _SECTION.finditer(" ".join(text.split())):
        numbers.extend(int(number) for number in re.findall(r"\d+", match.group(1)))
    return numbers


def test_the_scan_covers_what_the_issue_names() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in scanned_files()}

    for expected in (
        "README.md",
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "docs/protocols.md",
        "docs/architecture.md",
        "docs/troubleshooting.md",
        "msi_credential/cli.py",
        "msi_credential/_engine/flow.py",
        "tests/conftest.py",
        "tests/e2e/conftest.py",
        ".ci/run",
    ):
        assert expected in names


@pytest.mark.parametrize(
    ("text", "missing"),
    [
        ("see NOWHERE" + ".md section 3", ["NOWHERE" + ".md"]),
        ("as in docs/nowhere" + ".md", ["docs/nowhere" + ".md"]),
        (
            "msi_credential/_engine/no_such_module" + ".py owns it",
            ["msi_credential/_engine/no_such_module" + ".py"],
        ),
        ("[the docs](docs/missing" + ".md#top)", ["docs/missing" + ".md"]),
        ("docs/protocols.md section 5, README.md, CHANGELOG.md", []),
        ("tests/test_credential_<name>.py and samples/*.py", []),
        ("https://github.com/x/y/blob/main/SOMEWHERE" + ".md", []),
        ("msal-python's `msal/managed_identity.py`", []),
    ],
)
def test_the_scanner_finds_references_to_missing_files(text: str, missing: list[str]) -> None:
    assert missing_references(text, ROOT / "README.md") == missing


def test_every_referenced_file_exists() -> None:
    problems = []
    for path in scanned_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for target in missing_references(text, path):
            problems.append(f"{path.relative_to(ROOT)}: {target}")

    assert problems == [], "references to files that are not in the repository:\n" + "\n".join(problems)


def test_every_cited_protocol_section_exists() -> None:
    sections = protocol_sections()
    assert set(range(1, 14)) <= sections
    problems = []
    for path in scanned_files():
        for number in cited_sections(path.read_text(encoding="utf-8", errors="replace")):
            if number not in sections:
                problems.append(f"{path.relative_to(ROOT)}: docs/protocols.md section {number}")

    assert problems == []


def test_cited_sections_are_read_in_every_spelling() -> None:
    assert cited_sections("docs/protocols.md section 5") == [5]
    assert cited_sections("docs/protocols.md sections 3 and 4") == [3, 4]
    assert cited_sections("docs/protocols.md sections 2, 6, 8 and 10") == [2, 6, 8, 10]
    assert cited_sections("docs/protocols.md\n  section 9") == [9]


def _error_codes_in_the_code() -> set[str]:
    """The error codes written as literals (``error_code="..."``, ``code = "..."``, a detection problem's first
    element) in the library, without the emulator (whose codes are the endpoints' own)."""
    codes: set[str] = set()
    for path in (ROOT / "msi_credential").rglob("*.py"):
        if "emulator" in path.parts:
            continue
        text = path.read_text(encoding="utf-8")
        codes.update(re.findall(r'\b(?:error_code|code)\s*=\s*"([a-z][a-z0-9_]*)"', text))
    detection = (ROOT / "msi_credential/_engine/detection.py").read_text(encoding="utf-8")
    codes.update(re.findall(r'\(\s*"(invalid_[a-z_]+)",\s*\n', detection))
    return codes


def test_every_error_code_is_explained_in_the_troubleshooting_guide() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Troubleshooting: error codes", 1)[1].split("\n## ", 1)[0]
    listed_in_readme = set(re.findall(r"^\| `([a-z][a-z0-9_]*)` \|", section, re.MULTILINE))
    guide = (ROOT / "docs/troubleshooting.md").read_text(encoding="utf-8")
    explained = set(re.findall(r"^\| `([a-z][a-z0-9_]*)` \|", guide, re.MULTILINE))

    codes = _error_codes_in_the_code() | listed_in_readme
    assert {
        "credential_closed",
        "invalid_token_proxy_sni",
        "imds_unreachable",
    } <= codes  # the scan reads them
    assert sorted(codes - explained) == []
