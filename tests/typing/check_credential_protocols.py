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


async def both_faces(
    credential: msi_credential.ManagedIdentityCredential,
    async_credential: msi_credential.aio.ManagedIdentityCredential,
) -> None:
    # each face is each of azure-core's credential protocols of its kind
    token_credential: TokenCredential = credential
    token_info: SupportsTokenInfo = credential
    provider: TokenProvider = credential
    async_token_credential: AsyncTokenCredential = async_credential
    async_token_info: AsyncSupportsTokenInfo = async_credential
    async_provider: AsyncTokenProvider = async_credential

    # real SDK clients take either
    SecretClient(VAULT, credential)
    AsyncSecretClient(VAULT, async_credential)
    BlobServiceClient(ACCOUNT, credential=credential)
    AsyncBlobServiceClient(ACCOUNT, credential=async_credential)

    # azure-identity's chains take ours beside any credential of the protocol
    chain = ChainedTokenCredential(credential, token_credential)
    chain.close()
    async_chain = AsyncChainedTokenCredential(async_credential, async_token_credential)
    await async_chain.close()

    # both are context managers of their kind
    with msi_credential.ManagedIdentityCredential() as managed:
        managed.get_token_info(SCOPE)
    async with msi_credential.aio.ManagedIdentityCredential() as async_managed:
        await async_managed.get_token_info(SCOPE)
    async with async_credential:
        pass

    # bearer token providers, ours and azure-identity's, of our credential and of a chain
    bearer: Callable[[], str] = msi_credential.get_bearer_token_provider(credential, SCOPE)
    bearer = msi_credential.get_bearer_token_provider(chain, SCOPE)
    bearer = identity_provider(credential, SCOPE)
    async_bearer = msi_credential.aio.get_bearer_token_provider(async_credential, SCOPE)
    async_bearer = msi_credential.aio.get_bearer_token_provider(async_chain, SCOPE)
    token: str = await async_bearer()
    identity_bearer = identity_async_provider(async_credential, SCOPE)
    token = await identity_bearer()

    # requests' auth, on our credential or a chain
    auth: AuthBase = msi_credential.ManagedIdentityAuth(credential, SCOPE)
    auth = msi_credential.ManagedIdentityAuth(chain, SCOPE)
    requests.get(VAULT, auth=auth, timeout=5)
    del token_info, provider, async_token_info, async_provider, bearer, token
