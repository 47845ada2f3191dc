"""The async token provider: azure-identity's ``azure.identity.aio.get_bearer_token_provider`` contract."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Callable

from .._integrations import _cache_reader

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenProvider


def get_bearer_token_provider(
    credential: AsyncTokenProvider, *scopes: str
) -> Callable[[], Coroutine[Any, Any, str]]:
    """An async callable that returns a bearer token for ``scopes``, as azure-identity's async twin.

    For example ``AsyncAzureOpenAI(azure_ad_token_provider=get_bearer_token_provider(credential,
    "https://cognitiveservices.azure.com/.default"))``. With our async credential and one scope, a call reads the
    credential's cache (a dict lookup and a clock read) and awaits ``get_token_info`` only when the token is missing
    or due for refresh; any other credential goes through azure-core's ``AsyncBearerTokenCredentialPolicy``.
    """
    from ._credential import ManagedIdentityCredential

    fast = _cache_reader(credential, scopes, ManagedIdentityCredential)
    if fast is not None:
        bucket_get, clock, scope = fast
        get_token_info = credential.get_token_info  # type: ignore[union-attr]

        async def provider() -> str:
            entry = bucket_get(scope)
            if entry is not None and clock() < entry.refresh_on:
                return entry.info.token
            info = await get_token_info(scope)
            return info.token

        return provider
    return _policy_provider(credential, scopes)


def _policy_provider(
    credential: AsyncTokenProvider, scopes: tuple[str, ...]
) -> Callable[[], Coroutine[Any, Any, str]]:
    from azure.core.pipeline import PipelineContext, PipelineRequest
    from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    policy: AsyncBearerTokenCredentialPolicy[Any, Any] = AsyncBearerTokenCredentialPolicy(credential, *scopes)

    async def provider() -> str:
        request = PipelineRequest(HttpRequest("CredentialWrapper", "https://fakeurl"), PipelineContext(None))
        await policy.on_request(request)
        header: str = request.http_request.headers["Authorization"]
        return header[len("Bearer ") :]

    return provider
