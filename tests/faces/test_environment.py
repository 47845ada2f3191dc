"""msi_credential/_environment.py: get_managed_identity_source says which source the environment selects,
sends nothing, and is a public name of the package."""

from __future__ import annotations

import socket

import pytest

import msi_credential
from msi_credential import ManagedIdentitySource


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({}, ManagedIdentitySource.IMDS),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "h"},
            ManagedIdentitySource.APP_SERVICE,
        ),
        (
            {
                "IDENTITY_ENDPOINT": "https://127.0.0.1:1/t",
                "IDENTITY_HEADER": "h",
                "IDENTITY_SERVER_THUMBPRINT": "a",
            },
            ManagedIdentitySource.SERVICE_FABRIC,
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IMDS_ENDPOINT": "x"},
            ManagedIdentitySource.AZURE_ARC,
        ),
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t", "MSI_SECRET": "s"}, ManagedIdentitySource.MACHINE_LEARNING),
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t"}, ManagedIdentitySource.CLOUD_SHELL),
        (
            {"AZURE_FEDERATED_TOKEN_FILE": "/f", "AZURE_TENANT_ID": "t"},
            ManagedIdentitySource.WORKLOAD_IDENTITY,
        ),
        # a configuration a credential would refuse still names its source
        (
            {"IDENTITY_ENDPOINT": "http://10.1.1.1/t", "IDENTITY_HEADER": "h"},
            ManagedIdentitySource.APP_SERVICE,
        ),
    ],
)
def test_get_managed_identity_source_says_what_the_environment_selects_and_sends_nothing(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], source: ManagedIdentitySource
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(
        socket.socket, "connect", lambda *a: pytest.fail("get_managed_identity_source connected")
    )

    assert msi_credential.get_managed_identity_source() is source


def test_get_managed_identity_source_is_a_public_lazy_name() -> None:
    assert "get_managed_identity_source" in msi_credential.__all__
    assert "get_managed_identity_source" in dir(msi_credential)
    from msi_credential import get_managed_identity_source

    assert get_managed_identity_source() is ManagedIdentitySource.IMDS
