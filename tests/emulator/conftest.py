"""Fixtures of the emulator's tests (the root conftest's ``emulator_factory`` starts and stops the emulators)."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme


@pytest.fixture
def tls_cert(tmp_path: Path) -> tuple[str, str]:
    """A server certificate and its key for 127.0.0.1 and localhost, from a CA made for the test: the files
    ``Emulator(tls_cert=...)`` serves."""
    authority = trustme.CA()
    server = authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server.cert_chain_pems[0].write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)
