"""The application's tests: its real token code path, against the managed identity emulator (msi_emulator)."""

from __future__ import annotations

from typing import Any

import pytest
from vault_reader import SecretUnavailable, read_secret

from msi_credential.emulator import decode_jwt


def test_reads_the_secret_with_its_managed_identity(msi_emulator: Any, vault: Any) -> None:
    value = read_secret(vault.url, "db-password", **vault.options())

    assert value == "correct-horse-battery-staple (a test value)"
    assert vault.tokens == msi_emulator.issued_tokens()  # the token the vault saw came from the emulator
    assert decode_jwt(vault.tokens[0])["aud"] == "https://vault.azure.net"
    [request] = msi_emulator.requests
    assert request.query["resource"] == "https://vault.azure.net"


def test_reads_the_secret_with_azure_identitys_credential_too(msi_emulator: Any, vault: Any) -> None:
    azure_identity = pytest.importorskip("azure.identity")

    with azure_identity.ManagedIdentityCredential() as credential:
        value = read_secret(vault.url, "db-password", credential=credential, **vault.options())

    assert value.startswith("correct-horse")
    assert msi_emulator.tokens_issued == 1


@pytest.mark.parametrize("msi_emulator", ["imds", "app_service", "machine_learning"], indirect=True)
def test_reads_the_secret_wherever_it_is_deployed(msi_emulator: Any, vault: Any) -> None:
    assert read_secret(vault.url, "db-password", **vault.options()).startswith("correct-horse")
    assert msi_emulator.source.value in {"imds", "app_service", "machine_learning"}


@pytest.mark.msi_emulator(scenario="docker_desktop_imds")
def test_says_so_when_run_in_docker_desktop_without_a_managed_identity(msi_emulator: Any, vault: Any) -> None:
    with pytest.raises(SecretUnavailable, match="imds_unreachable"):
        read_secret(vault.url, "db-password", **vault.options())

    assert vault.tokens == []


@pytest.mark.msi_emulator(scenario="identity_not_yet_assigned")
def test_works_once_a_new_identity_has_propagated(msi_emulator: Any, vault: Any) -> None:
    for _ in range(2):  # the first two token requests: "Identity not found"
        with pytest.raises(SecretUnavailable, match="identity_not_found"):
            read_secret(vault.url, "db-password", **vault.options())

    assert read_secret(vault.url, "db-password", **vault.options()).startswith("correct-horse")
