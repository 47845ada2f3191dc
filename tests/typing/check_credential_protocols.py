"""Type-checked, never run: both credentials and the helpers go wherever azure-core's protocols and real SDK clients
take a credential, clean under ``mypy --strict`` and pyright (.ci/run checks this file with both).

A typed codebase that swaps azure-identity's ManagedIdentityCredential for ours must type-check unchanged. Not a
test module (pytest collects only test_*.py); importing it does nothing.
"""

from __future__ import annotations

from typing import Callable

import requests
from azure.core.credentials import SupportsTokenInfo, TokenCredential, TokenProvider
from azure.core.credentials_async import AsyncSupportsTokenInfo, AsyncTokenCredential, AsyncTokenProvider
from azure.identity import ChainedTokenCredential
from azure.identity import get_bearer_token_provider as identity_provider
from azure.identity.aio import ChainedTokenCredential as AsyncChainedTokenCredential
from azure.identity.aio import get_bearer_token_provider as identity_async_provider
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient
from azure.storage.blob import BlobServiceClient
from azure.storage.blob.aio import BlobServiceClient as AsyncBlobServiceClient
from requests.auth import AuthBase

import msi_credential
import msi_credential.aio

VAULT = "https://vault.example"
ACCOUNT = "https://account.blob.example"
SCOPE = "https://vault.azure.net/.default"


def sync_face(credential: msi_credential.ManagedIdentityCredential) -> None:
    token_credential: TokenCredential = credential
    token_info: SupportsTokenInfo = credential
    provider: TokenProvider = credential
    SecretClient(VAULT, credential)
    BlobServiceClient(ACCOUNT, credential=credential)
    chain = ChainedTokenCredential(credential, token_credential)
    chain.close()
    with msi_credential.ManagedIdentityCredential() as managed:
        managed.get_token_info(SCOPE)
    bearer: Callable[[], str] = msi_credential.get_bearer_token_provider(credential, SCOPE)
    bearer = msi_credential.get_bearer_token_provider(chain, SCOPE)
    bearer = identity_provider(credential, SCOPE)
    auth: AuthBase = msi_credential.ManagedIdentityAuth(credential, SCOPE)
    auth = msi_credential.ManagedIdentityAuth(chain, SCOPE)
    requests.get(VAULT, auth=auth, timeout=5)
    del token_info, provider, bearer


async def async_face(credential: msi_credential.aio.ManagedIdentityCredential) -> None:
    token_credential: AsyncTokenCredential = credential
    token_info: AsyncSupportsTokenInfo = credential
    provider: AsyncTokenProvider = credential
    AsyncSecretClient(VAULT, credential)
    AsyncBlobServiceClient(ACCOUNT, credential=credential)
    chain = AsyncChainedTokenCredential(credential, token_credential)
    await chain.close()
    async with msi_credential.aio.ManagedIdentityCredential() as managed:
        await managed.get_token_info(SCOPE)
    async with credential:
        pass
    bearer = msi_credential.aio.get_bearer_token_provider(credential, SCOPE)
    bearer = msi_credential.aio.get_bearer_token_provider(chain, SCOPE)
    token: str = await bearer()
    identity_bearer = identity_async_provider(credential, SCOPE)
    token = await identity_bearer()
    del token_info, provider, token
