"""Fixtures of the integration tests (tests/integrations/)."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential.emulator import Emulator


@pytest.fixture
def emulator(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("imds")
    return started
