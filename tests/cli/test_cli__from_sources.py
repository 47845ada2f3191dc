"""Hand-off for test_cli.py of tests/cli (``cli.py``): ``msi-credential demo`` includes the AKS token proxy. From
test_token_proxy.py (the sources helper, issue 27)."""

from __future__ import annotations

import io

import pytest


def test_demo_includes_the_token_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    from msi_credential import cli

    out = io.StringIO()
    assert cli.main(["demo"], stdout=out) == 0
    [row] = [line for line in out.getvalue().splitlines() if line.startswith("+ token proxy ")]
    detected, first, first_requests, second, second_requests, audience = row.split()[3:]
    assert detected == "workload_identity"
    assert first.endswith("ms") and first_requests == "1"
    assert second.endswith("us") and second_requests == "0"  # from the cache
    assert audience == "https://storage.azure.com"
