"""Child processes the tests start: a clean environment for them, and one way to run them to their end."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .conftest import MANAGED_IDENTITY_VARIABLES

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def child_environment(
    extra: Mapping[str, str] | None = None, *, drop: Iterable[str] = (), drop_prefixes: tuple[str, ...] = ()
) -> dict[str, str]:
    """This process's environment for a child: without the managed identity variables and the proxy variables
    (``NO_PROXY=*`` instead, in both cases), without the names in ``drop`` and those that start with one of
    ``drop_prefixes`` (both compared in upper case), and with ``extra`` on top."""
    dropped = {name.upper() for name in (*PROXY_VARIABLES, *drop)}
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in MANAGED_IDENTITY_VARIABLES
        and name.upper() not in dropped
        and not name.upper().startswith(drop_prefixes)
    }
    env["NO_PROXY"] = env["no_proxy"] = "*"
    env.update(extra or {})
    return env


def run(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a child process to its end (or the timeout), its output captured as text: the caller checks its exit
    code, to say what went wrong in its own words."""
    return subprocess.run(
        list(argv),
        cwd=cwd,
        env=None if env is None else dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
