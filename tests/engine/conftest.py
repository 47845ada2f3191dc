"""Fixtures of the engine's tests (tests/engine/)."""

from __future__ import annotations

import pytest


@pytest.fixture
def imds_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default IMDS address is http://127.0.0.1:9: a first contact that the scripted driver answers (IMDS's own
    address would not fail fast like a loopback one, docs/protocols.md section 7)."""
    from msi_credential._engine import detection

    monkeypatch.setattr(detection, "IMDS_DEFAULT_HOST", "http://127.0.0.1:9")
