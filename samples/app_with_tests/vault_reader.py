"""A small application: it reads a secret from Azure Key Vault with its managed identity.

On Azure it runs as it is (``python vault_reader.py https://<name>.vault.azure.net db-password``): the managed
identity credential finds the host's endpoint. Its tests (test_vault_reader.py) run it against the managed identity
emulator through the ``msi_emulator`` pytest fixture and a Key Vault stand-in on loopback; nothing in this file knows
about either.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from azure.core.credentials import TokenCredential
from azure.keyvault.secrets import SecretClient

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential


class SecretUnavailable(RuntimeError):
    """The secret cannot be read here: no managed identity on this host."""


def read_secret(
    vault_url: str, name: str, *, credential: Optional[TokenCredential] = None, **client_options: Any
) -> str:
    """The value of secret ``name`` in the vault at ``vault_url``, read with this host's managed identity (or with
    ``credential``, e.g. azure-identity's ``ManagedIdentityCredential``)."""
    owned = credential is None
    credential = credential or ManagedIdentityCredential()
    try:
        with SecretClient(vault_url, credential, **client_options) as client:
            value = client.get_secret(name).value
    except CredentialUnavailableError as error:
        raise SecretUnavailable(f"no managed identity here to read {name!r}: {error.error_code}") from error
    finally:
        if owned:
            credential.close()  # type: ignore[attr-defined]
    if value is None:
        raise SecretUnavailable(f"secret {name!r} has no value")
    return value


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python vault_reader.py VAULT_URL SECRET_NAME", file=sys.stderr)
        return 2
    print(f"{argv[1]} has {len(read_secret(argv[0], argv[1]))} characters")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
