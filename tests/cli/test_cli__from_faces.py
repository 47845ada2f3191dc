"""msi_credential/cli.py (from the former test_diagnostics.py and test_observability.py): ``detect`` asks
get_managed_identity_source and shows the token proxy, ``token`` says where its token came from."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest

import msi_credential
from msi_credential import ManagedIdentitySource
from msi_credential.cli import main
from msi_credential.emulator import Emulator

from ..faces.support import STORAGE


@pytest.fixture
def emulator(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("imds")
    return started


@pytest.fixture
def debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="msi_credential")


def test_detect_uses_it_and_shows_the_token_proxy(
    monkeypatch: pytest.MonkeyPatch, emulator_factory: Any
) -> None:
    emulator: Emulator = emulator_factory("workload_identity", token_proxy=True)
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    asked: list[bool] = []
    real = msi_credential.get_managed_identity_source

    def spy() -> ManagedIdentitySource:
        asked.append(True)
        return real()

    import msi_credential._environment as environment

    monkeypatch.setattr(environment, "get_managed_identity_source", spy)
    out = io.StringIO()

    assert main(["detect"], stdout=out) == 0

    text = out.getvalue()
    assert asked == [True]
    assert "source:    workload_identity" in text
    assert f"with enable_azure_proxy=True, token requests go to {emulator.url}" in text
    assert "AZURE_KUBERNETES_SNI_NAME" in text
    assert emulator.requests == []


def test_detect_says_when_the_proxy_configuration_would_be_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AZURE_FEDERATED_TOKEN_FILE", "/f")
    monkeypatch.setenv("AZURE_TENANT_ID", "t")
    monkeypatch.setenv("AZURE_KUBERNETES_SNI_NAME", "x.invalid")
    out = io.StringIO()

    assert main(["detect"], stdout=out) == 0

    assert (
        "enable_azure_proxy=True would refuse this: AZURE_KUBERNETES_SNI_NAME is set without"
        in out.getvalue()
    )


@pytest.mark.usefixtures("debug")  # as in tests/integrations/test_observe.py, where every test runs at DEBUG
def test_cli_token_shows_where_the_token_came_from(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import json

    from msi_credential.cli import main

    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    assert main(["token", STORAGE], stdout=out) == 0
    [line] = [line for line in out.getvalue().splitlines() if line.startswith("from:")]
    assert line.startswith("from:        endpoint (1 HTTP request; ")
    assert emulator.issued_tokens()[0] not in out.getvalue() + capsys.readouterr().err

    out = io.StringIO()
    assert main(["token", STORAGE, "--json"], stdout=out) == 0
    assert json.loads(out.getvalue())["origin"] == "cache"  # the process-wide cache had it from the first run
    out = io.StringIO()
    assert main(["token", STORAGE], stdout=out) == 0
    assert "from:        cache (a cache hit)" in out.getvalue().splitlines()
    assert emulator.tokens_issued == 1
    assert logging.getLogger("msi_credential").level == logging.DEBUG  # caplog's; the CLI restored it
