"""The credential after ours in an azure-identity chain (ChainedTokenCredential, DefaultAzureCredential-like), for
the tests that put ours in one: it always has a token, and counts how often the chain asked it."""

from __future__ import annotations

from typing import Any

from azure.core.credentials import AccessToken, AccessTokenInfo

EXPIRES_ON = 4_102_444_800  # 2100-01-01: a token that outlives any test


class FallbackCredential:
    """The next credential in a chain: a fixed token, and how often it was asked."""

    TOKEN = "fallback-token"

    def __init__(self) -> None:
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls += 1
        return AccessToken(self.TOKEN, EXPIRES_ON)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.calls += 1
        return AccessTokenInfo(self.TOKEN, EXPIRES_ON)


class AsyncFallbackCredential(FallbackCredential):
    """The same, for the async chains."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return FallbackCredential.get_token(self, *scopes, **kwargs)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:  # type: ignore[override]
        return FallbackCredential.get_token_info(self, *scopes, options=options)

    async def close(self) -> None:
        pass

    async def __aenter__(self) -> AsyncFallbackCredential:
        return self

    async def __aexit__(self, *args: Any) -> None:
        pass
