"""Hand-off for test_server.py of tests/emulator (``emulator/_server.py``): only the token proxy emulator rotates a
CA. From test_token_proxy.py (the sources helper, issue 27)."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential.emulator import Emulator


def test_rotate_proxy_ca_needs_the_token_proxy(emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    with pytest.raises(RuntimeError, match="token_proxy"):
        emulator.rotate_proxy_ca()
    with pytest.raises(ValueError, match="workload identity"):
        Emulator("imds", token_proxy=True)
