"""Check the built sdist and wheel beyond `twine check`: the license ships, the metadata says what we promise.

Run by the build session of noxfile.py (`bash .ci/run`, or `nox -s build`) after `python -m build`:

    python .ci/check_dist.py dist/ build.log

It fails (exit 1, one line per problem) when the build log has a warning, the wheel lacks the LICENSE file or the
py.typed marker or the emulator's certificate, or the metadata lacks the SPDX license expression, a Python
version classifier for 3.9 to 3.13, the status and OS classifiers, or the project URLs.
"""

from __future__ import annotations

import re
import sys
import tarfile
import zipfile
from email.parser import Parser
from pathlib import Path

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]
WHEEL_FILES = [
    "msi_credential/py.typed",
    "msi_credential/emulator/_cli.py",
    "msi_credential/cli.py",
    "msi_credential/pytest_plugin.py",
]
SDIST_FILES = ["LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "docs/protocols.md"]


def problems_of(dist: Path, build_log: Path) -> list[str]:
    problems: list[str] = []
    for line in build_log.read_text(encoding="utf-8", errors="replace").splitlines():
        if re.search(r"warning", line, re.IGNORECASE):
            problems.append(f"build warning: {line.strip()}")
    wheels = sorted(dist.glob("*.whl"))
    sdists = sorted(dist.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [*problems, f"expected one wheel and one sdist in {dist}, found {wheels + sdists}"]
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = wheel.namelist()
        metadata_name = next(name for name in names if name.endswith(".dist-info/METADATA"))
        metadata = Parser().parsestr(wheel.read(metadata_name).decode("utf-8"))
        entry_points_name = next(
            (name for name in names if name.endswith(".dist-info/entry_points.txt")), None
        )
        entry_points = wheel.read(entry_points_name).decode("utf-8") if entry_points_name else ""
    if (
        "[pytest11]" not in entry_points
        or "msi_credential = msi_credential.pytest_plugin" not in entry_points
    ):
        problems.append("the wheel does not register the pytest plugin (entry point pytest11 msi_credential)")
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        problems.append("the wheel does not ship LICENSE (.dist-info/licenses/LICENSE)")
    problems.extend(f"the wheel lacks {name}" for name in WHEEL_FILES if name not in names)
    if any(name.endswith((".pem", ".key")) for name in names):
        problems.append("the wheel ships a certificate or private key (the emulator makes its CA per run)")
    if any(name.startswith(("tests/", "samples/", "benchmarks/")) for name in names):
        problems.append("the wheel carries tests, samples or benchmarks as top-level packages")
    if metadata.get("License-Expression") != "MIT":
        problems.append(f"License-Expression is {metadata.get('License-Expression')!r}, not 'MIT'")
    if metadata.get("License"):
        problems.append("the deprecated License field is set besides License-Expression")
    classifiers = metadata.get_all("Classifier") or []
    for version in PYTHONS:
        if f"Programming Language :: Python :: {version}" not in classifiers:
            problems.append(f"no classifier for Python {version}")
    if not any(value.startswith("Development Status :: ") for value in classifiers):
        problems.append("no Development Status classifier")
    if not any(value.startswith("Operating System :: ") for value in classifiers):
        problems.append("no Operating System classifier")
    if any(value.startswith("License :: ") for value in classifiers):
        problems.append("a License classifier besides the SPDX expression (PEP 639 forbids both)")
    urls = metadata.get_all("Project-URL") or []
    for label in ("Homepage", "Documentation", "Source", "Issues", "Changelog"):
        if not any(url.startswith(f"{label}, https://") for url in urls):
            problems.append(f"no {label} project URL")
    if metadata.get("Requires-Python") != ">=3.9":
        problems.append(f"Requires-Python is {metadata.get('Requires-Python')!r}")
    with tarfile.open(sdists[0]) as sdist:
        members = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    problems.extend(f"the sdist lacks {name}" for name in SDIST_FILES if name not in members)
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python .ci/check_dist.py DIST_DIR BUILD_LOG", file=sys.stderr)
        return 2
    problems = problems_of(Path(argv[0]), Path(argv[1]))
    for problem in problems:
        print(f"check_dist: {problem}", file=sys.stderr)
    if not problems:
        print(
            "check_dist: LICENSE shipped, SPDX MIT, Python 3.9-3.13, status, OS and URLs present, no warnings"
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
