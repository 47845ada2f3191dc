"""Both drivers (msi_credential/_transport/sync.py and aio.py) through the ``face`` fixture (from the former
test_credential_common.py): the proxy variables are not used toward a managed identity endpoint."""

from __future__ import annotations

from typing import Any

from ..faces.support import STORAGE


def test_proxy_variables_are_ignored_for_managed_identity(
    face: Any, emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{unused_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    emulator = emulator_factory("app_service")
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token
    assert len(emulator.requests) == 1
