"""Hand-off for test_cli.py of tests/emulator (``emulator/_cli.py``): ``msi-credential emulate --token-proxy``. From
test_token_proxy.py (the sources helper, issue 27)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator

import pytest

from msi_credential.emulator import TOKEN_PROXY_SERVER_NAME


@pytest.fixture
def stop_immediately(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from msi_credential.emulator import _cli

    monkeypatch.setattr(_cli, "wait_until_stopped", lambda stop: None)
    yield


def test_emulate_token_proxy_prints_the_variables(stop_immediately: None) -> None:
    from msi_credential import cli

    out = io.StringIO()
    assert (
        cli.main(
            ["emulate", "--source", "workload_identity", "--token-proxy", "--format", "json"], stdout=out
        )
        == 0
    )
    document = json.loads(out.getvalue().splitlines()[0])
    env = document["env"]
    assert env["AZURE_KUBERNETES_TOKEN_PROXY"].startswith("https://127.0.0.1:")
    assert env["AZURE_KUBERNETES_TOKEN_PROXY"].endswith("/aks-token-proxy")
    assert env["AZURE_KUBERNETES_SNI_NAME"] == TOKEN_PROXY_SERVER_NAME
    assert env["AZURE_KUBERNETES_CA_FILE"] == document["ca_file"]
    assert not os.path.exists(document["ca_file"])  # removed at stop
    assert document["token_proxy"] == {"server_name": TOKEN_PROXY_SERVER_NAME, "path": "/aks-token-proxy"}
    assert "REQUESTS_CA_BUNDLE" not in env


def test_emulate_token_proxy_shell_form_explains_it(stop_immediately: None) -> None:
    from msi_credential import cli

    out = io.StringIO()
    assert cli.main(["emulate", "--source", "workload_identity", "--token-proxy"], stdout=out) == 0
    text = out.getvalue()
    assert "export AZURE_KUBERNETES_SNI_NAME=token-proxy.msi-emulator.invalid" in text
    assert "enable_azure_proxy=True" in text


def test_emulate_token_proxy_needs_workload_identity(capsys: pytest.CaptureFixture[str]) -> None:
    from msi_credential import cli

    assert cli.main(["emulate", "--source", "imds", "--token-proxy"], stdout=io.StringIO()) == 2
    assert "--token-proxy needs --source workload_identity" in capsys.readouterr().err
