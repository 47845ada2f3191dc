"""The async face: the shared construction, then the engine's flows run by the async driver."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional

from .._setup import CredentialBase

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
    from typing_extensions import Self

    from .._engine.cache import Bucket
    from .._engine.flow import Flow


class ManagedIdentityCredential(CredentialBase):
    """Async Azure managed identity tokens: the same engine, keywords and behaviour as the sync credential."""

    def _start_driver(self, sleep: Any, kwargs: dict[str, Any]) -> None:
        from .._transport.aio import AsyncDriver, single_flight

        self._driver = AsyncDriver(sleep=sleep or asyncio.sleep, **kwargs)
        self._single_flight = single_flight

    async def _serve(
        self,
        bucket: Bucket,
        resource: str,
        cached: AccessTokenInfo,
        refresh: Optional[Callable[[], Flow]],
    ) -> AccessTokenInfo:
        """The cached token at once; its refresh, when due, runs beside this call as a task of the running loop
        (Engine.serve decided)."""
        if refresh is not None:
            self._driver.refresh_beside(bucket, resource, refresh)
        return cached

    async def get_token(
        self,
        *scopes: str,
        claims: Optional[str] = None,
        tenant_id: Optional[str] = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """A token for the one scope's resource. ``tenant_id`` and ``enable_cae`` do not change the request."""
        if claims is None:
            entry = self._hit(scopes)
            if entry is not None:
                return entry.access_token
        from azure.core.credentials import AccessToken

        info = await self._acquire(scopes, claims)
        return AccessToken(info.token, info.expires_on)

    async def get_token_info(
        self, *scopes: str, options: Optional[TokenRequestOptions] = None
    ) -> AccessTokenInfo:
        """Like get_token, with ``refresh_on``; ``options`` may carry ``claims``."""
        claims = options.get("claims") if options else None
        if claims is None:
            entry = self._hit(scopes)
            if entry is not None:
                return entry.info
        return await self._acquire(scopes, claims)

    async def _acquire(self, scopes: tuple[str, ...], claims: object) -> AccessTokenInfo:
        trace, request = self._plan(scopes, claims)
        with trace:  # the acquisition's span, when tracing is on: current while the request runs
            try:
                info: AccessTokenInfo = await request()
            except Exception as error:
                trace.report_failure(error)
                raise
            trace.report(info)
        return info

    async def close(self) -> None:
        """Release the HTTP connections. Cached tokens stay for other credentials that share them."""
        await self._driver.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]] = None,
        exc_value: Optional[BaseException] = None,
        traceback: Optional[TracebackType] = None,
    ) -> None:
        await self.close()
