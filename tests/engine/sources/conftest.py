"""Fixtures of the sources' tests: no proxy variable of the machine's own, and a certificate for an HTTPS emulator."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme

PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workload identity honours proxy variables: keep the machine's own out of these tests."""
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[str, str]:
    """A server certificate for 127.0.0.1 from a throwaway CA (Service Fabric's endpoint is HTTPS)."""
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)
