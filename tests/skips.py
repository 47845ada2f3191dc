"""Skips that cannot hide in CI: CI (``CI`` set, as .ci/run does) must run every test its platform can run."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail_in_ci(reason: str) -> NoReturn:
    """Skip locally; fail under CI, where whatever the test needs is installed by .ci/run and pyproject.toml."""
    if in_ci():
        pytest.fail(f"CI is set, so this test must run: {reason}", pytrace=False)
    pytest.skip(reason)
