"""CI and the mutation run as nox sessions. ``nox -l`` lists them; ``nox`` runs CI's, in CI's order.

CI (``bash .ci/run`` installs nox and runs exactly these, in this order):

- ``npm``: ``npm ci`` from package-lock.json: Azurite (the e2e tests, the storage sample), the JS SDKs (the interop
  tests) and pyright.
- ``gates``: ruff check, ruff format --check, ``mypy --strict msi_credential``, and the type-check gate (mypy and
  pyright on tests/typing: code that swaps azure-identity's credential for ours type-checks unchanged).
- ``build``: the sdist and the wheel (``python -m build``) into dist/, no build warnings, ``twine check --strict``,
  ``.ci/check_dist.py``.
- ``wheel-3.X``, one per CPython 3.9 to 3.13 found: the built wheel with its extras in a fresh venv, and from outside
  the tree the demo, ``python -m msi_credential detect``, every sample (``--help``, then plain) and
  samples/app_with_tests through the wheel's pytest plugin.
- ``tests-3.X``: the suite on the oldest Python found, then, last, on the newest with the README's test command
  (``python -m pytest``) and branch coverage of msi_credential, so its closing line is the last thing printed. Both
  on two pytest-xdist workers (``--dist loadgroup``: the tests that share a fixed resource form one group).

Not in CI: ``mutation`` (mutmut over the engine and the drivers' file, machine cache and policy modules;
docs/mutation.md).

Interpreters are found as CI always found them: for each 3.X, the newest ``~/.pyenv/versions/3.X.*``, else
``python3.X`` on PATH (nox alone would look only on PATH); ``nox -l`` shows which were found.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import nox

ROOT = Path(__file__).resolve().parent
MINORS = ("3.9", "3.10", "3.11", "3.12", "3.13")
XDIST = ("-n", "2", "--dist", "loadgroup")


def _cpython_version(executable: str) -> str | None:
    """``platform.python_version()`` of ``executable`` if it is a CPython 3.9 to 3.13 that runs, else None."""
    probe = (
        "import platform, sys; "
        "ok = platform.python_implementation() == 'CPython' and (3, 9) <= sys.version_info[:2] <= (3, 13); "
        "print(platform.python_version() if ok else '')"
    )
    try:
        result = subprocess.run(
            [executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def _release(path: str) -> tuple[int, ...]:
    """(3, 12, 1) for ``.../versions/3.12.1/bin/python``: sorts patch releases numerically."""
    name = Path(path).parent.parent.name
    return tuple(int(part) for part in re.findall(r"\d+", name))


def find_pythons() -> dict[str, tuple[str, str]]:
    """{"3.X": (interpreter path, full version)} for every CPython 3.9 to 3.13 found, oldest first."""
    found: dict[str, tuple[str, str]] = {}
    pyenv = os.path.expanduser("~/.pyenv/versions")
    for minor in MINORS:
        candidates = sorted(glob.glob(f"{pyenv}/{minor}.*/bin/python"), key=_release, reverse=True)
        path = candidates[0] if candidates else shutil.which(f"python{minor}")
        version = _cpython_version(path) if path else None
        if path and version and version.startswith(minor + "."):
            found[minor] = (path, version)
    if not found:  # no 3.X anywhere: a python3 of a supported version will do
        path = shutil.which("python3")
        version = _cpython_version(path) if path else None
        if path and version:
            found[".".join(version.split(".")[:2])] = (path, version)
    return found


PYTHONS = find_pythons()
OLDEST = next(iter(PYTHONS), None)
NEWEST = next(reversed(PYTHONS), None) if PYTHONS else None
SUITE = [minor for minor in dict.fromkeys([OLDEST, NEWEST]) if minor]  # oldest first, newest last

nox.options.default_venv_backend = "venv"
nox.options.download_python = "never"  # only the interpreters found above
nox.options.error_on_missing_interpreters = True
nox.options.sessions = [
    "npm",
    "gates",
    "build",
    *(f"wheel-{minor}" for minor in PYTHONS),
    *(f"tests-{minor}" for minor in SUITE),
]
nox.options.stop_on_first_error = True  # as CI always did: a failed step stops the run


def _interpreter(minor: str | None) -> str:
    if minor is None:
        raise SystemExit(
            "no CPython 3.9 to 3.13 found (looked in ~/.pyenv/versions and for python3.X on PATH)"
        )
    return PYTHONS[minor][0]


def _install_dev(session: nox.Session) -> None:
    session.install("--quiet", "--upgrade", "pip")
    session.install("--quiet", "-e", ".[dev]")


@nox.session(python=False, tags=["ci"])
def npm(session: nox.Session) -> None:
    """node_modules from package-lock.json: Azurite 3.37.0, the JS SDKs of the interop tests, pyright."""
    # Node.js 20+ and npm; azurite 3.37.0 declares node 22 but runs on 20 (an engine warning, not an error).
    session.run("npm", "ci", "--no-audit", "--no-fund", external=True)


@nox.session(python=_interpreter(NEWEST) if NEWEST else False, tags=["ci"])
def gates(session: nox.Session) -> None:
    """ruff check, ruff format --check, mypy --strict, and the type-check gate (mypy, pyright) on tests/typing."""
    _install_dev(session)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "--strict", "msi_credential")
    # A typed codebase that swaps azure-identity's credential for ours must type-check unchanged: mypy, and pyright
    # pinned in package-lock.json (the npm session; no download at run time), configured by
    # tests/typing/pyrightconfig.json, resolving imports in this session's environment.
    session.run("mypy", "--strict", "tests/typing/check_credential_protocols.py")
    python = os.path.join(session.bin, "python")
    session.run("npx", "--no-install", "pyright", "-p", "tests/typing", "--pythonpath", python, external=True)


@nox.session(python=_interpreter(NEWEST) if NEWEST else False, tags=["ci"])
def build(session: nox.Session) -> None:
    """dist/: the sdist and the wheel, no build warnings, twine check --strict, .ci/check_dist.py."""
    session.install("--quiet", "--upgrade", "pip")
    session.install("--quiet", "build>=1.2", "twine>=6.1")
    shutil.rmtree(ROOT / "dist", ignore_errors=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="msi-credential-build-") as work:
        log = Path(work) / "build.log"
        # PYTHONDONTWRITEBYTECODE makes setuptools warn that it skips byte-compiling: not a packaging problem.
        env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
        command = [os.path.join(session.bin, "python"), "-m", "build", "--outdir", "dist", "."]
        session.log(" ".join(["python", *command[1:]]) + f" > {log}")
        with open(log, "w", encoding="utf-8") as output:
            result = subprocess.run(
                command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, check=False
            )
        text = log.read_text(encoding="utf-8", errors="replace")
        if result.returncode != 0:
            print(text)
            session.error(f"python -m build failed (exit code {result.returncode})")
        print(text.strip().splitlines()[-1])
        session.run("twine", "check", "--strict", *sorted(glob.glob("dist/*")))
        session.run("python", ".ci/check_dist.py", "dist", str(log))


def wheel(session: nox.Session) -> None:
    """The built wheel in a fresh venv: demo, detect, every sample and samples/app_with_tests, outside the tree."""
    wheels = sorted((ROOT / "dist").glob("*.whl"))
    if len(wheels) != 1:
        session.error(f"expected one wheel in {ROOT / 'dist'} (run the build session first), found {wheels}")
    session.install("--quiet", "--upgrade", "pip")
    # The wheel with its async and emulator extras, plus the clients the storage and Key Vault samples use.
    # pytest: the example application's own tests run through the wheel's pytest plugin.
    session.install(
        "--quiet", f"{wheels[0]}[aio,emulator]", "azure-storage-blob", "azure-keyvault-secrets", "pytest"
    )
    venv = Path(session.virtualenv.location).resolve()
    samples = sorted((ROOT / "samples").glob("*.py"))
    with tempfile.TemporaryDirectory(prefix="msi-credential-wheel-") as work:
        session.chdir(work)  # outside the tree: msi_credential can only come from the wheel
        location = session.run(
            "python", "-c", "import msi_credential; print(msi_credential.__file__)", silent=True
        )
        location = str(location).strip()
        if not Path(location).resolve().is_relative_to(venv):
            session.error(f"msi_credential imported from {location}, not from the wheel")
        print(f"msi_credential imported from the wheel: {location}")
        session.run("msi-credential", "--version")
        session.run("msi-credential", "demo")
        session.run("python", "-m", "msi_credential", "detect")
        for sample in samples:
            print(f"-- {sample.name}")
            session.run("python", str(sample), "--help", silent=True)
            session.run("python", str(sample))
        print("-- samples/app_with_tests: the application's tests, with the plugin the wheel registers")
        session.run(
            "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", os.devnull, "--rootdir", work,
            str(ROOT / "samples" / "app_with_tests"),
        )  # fmt: skip
        session.chdir(ROOT)
    print(
        f"{PYTHONS[session.name.split('-', 1)[1]][1]}: wheel installed, demo and {len(samples)} samples ran"
    )


def _register(function: Callable[[nox.Session], None], minor: str, tag: str, what: str) -> None:
    """``function`` as the session ``<name>-<minor>`` on the interpreter found for ``minor``; nox -l says which."""
    path, version = PYTHONS[minor]

    def session(session: nox.Session) -> None:
        function(session)

    session.__doc__ = f"CPython {version} ({path}): {what}"
    nox.session(python=path, name=f"{function.__name__}-{minor}", tags=[tag])(session)


for _minor in PYTHONS:
    _register(
        wheel,
        _minor,
        "ci",
        "the wheel in a fresh venv; demo, detect, samples, app_with_tests, outside the tree.",
    )


def tests(session: nox.Session) -> None:
    """The suite; on the newest Python, last: the README's test command, with branch coverage of msi_credential."""
    _install_dev(session)
    minor = session.name.split("-", 1)[1]
    if minor == NEWEST:
        session.run(
            "python", "-m", "pytest", *XDIST, "--cov=msi_credential", "--cov-branch", "--cov-report=term",
            *session.posargs,
        )  # fmt: skip
        # The README's test command's closing line ("N passed ...") closes the output: from here on nox says only
        # warnings and errors (a failure still shows), not "Session ... was successful" or its summary table.
        logging.getLogger("nox").setLevel(logging.WARNING)
    else:
        session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *XDIST, *session.posargs)


for _minor in SUITE:
    # `nox -t ci` runs every CI session but the last; `nox -t ci-last` then runs the suite on the newest Python.
    if _minor == NEWEST:
        _register(tests, _minor, "ci-last", "the suite, last, with the README's command and branch coverage.")
    else:
        _register(tests, _minor, "ci", "the suite.")


@nox.session(python=_interpreter(NEWEST) if NEWEST else False, default=False)
def mutation(session: nox.Session) -> None:
    """Not in CI: mutmut over [tool.mutmut] of pyproject.toml, afresh, then its results (docs/mutation.md)."""
    _install_dev(session)
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    session.run("mutmut", "run", *session.posargs)
    session.run("mutmut", "results")


if __name__ == "__main__":  # `python noxfile.py`: the interpreters CI would use
    for _minor, (_path, _version) in PYTHONS.items():
        print(f"{_minor}: {_version} at {_path}")
    sys.exit(0 if PYTHONS else 1)
