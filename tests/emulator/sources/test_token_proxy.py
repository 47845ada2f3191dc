"""msi_credential/emulator/sources/token_proxy.py, the emulated AKS token proxy: azure-identity's own
WorkloadIdentityCredential gets a token from it (the emulator started by the ``proxy`` fixture, tests/conftest.py)."""

from __future__ import annotations

import pytest

from msi_credential.emulator import TOKEN_PROXY_SERVER_NAME, Emulator

STORAGE = "https://storage.azure.com/.default"


def test_azure_identity_with_enable_azure_proxy_gets_a_token_from_the_emulated_proxy(
    proxy: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import WorkloadIdentityCredential

    for name, value in proxy.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "*")

    import importlib.util

    if importlib.util.find_spec("azure.identity._internal.token_binding_transport_mixin") is None:
        # azure-identity before 1.27 (the last release for Python 3.9 is 1.26) has no identity bindings: it ignores
        # the opt-in, goes to AZURE_AUTHORITY_HOST, and refuses that server's certificate (made for the proxy's
        # name). Nothing is issued.
        from azure.core.exceptions import AzureError

        with pytest.raises(AzureError):
            WorkloadIdentityCredential(enable_azure_proxy=True).get_token(STORAGE)
        assert proxy.issued_tokens() == []
        return

    token = WorkloadIdentityCredential(enable_azure_proxy=True).get_token(STORAGE)

    assert token.token == proxy.issued_tokens()[-1]
    assert proxy.requests[-1].server_name == TOKEN_PROXY_SERVER_NAME
