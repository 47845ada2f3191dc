"""The sync face: the shared construction, then the engine's flows run by the sync driver."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Callable, Optional

from ._setup import CredentialBase

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, AccessTokenInfo, TokenRequestOptions
    from typing_extensions import Self

    from ._engine.cache import Bucket
    from ._engine.flow import Flow


class ManagedIdentityCredential(CredentialBase):
    """Azure managed identity tokens for azure-* SDK clients, in every hosting environment.

    The source is detected once, here. Tokens are cached in memory, shared by credentials of the same endpoint and
    identity unless ``share_cache=False``. Keywords as azure-identity's ManagedIdentityCredential (see README.md).
    """

    def _start_driver(self, sleep: Any, kwargs: dict[str, Any]) -> None:
        from ._transport.sync import SyncDriver, single_flight

        self._driver = SyncDriver(sleep=sleep or time.sleep, **kwargs)
        self._single_flight = single_flight

    def _serve(
        self,
        bucket: Bucket,
        resource: str,
        cached: AccessTokenInfo,
        refresh: Optional[Callable[[], Flow]],
    ) -> AccessTokenInfo:
        """The cached token at once; its refresh, when due, runs beside this call (Engine.serve decided)."""
        if refresh is not None:
            self._driver.refresh_beside(bucket, resource, refresh)
        return cached

    def get_token(
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

        info = self._acquire(scopes, claims)
        return AccessToken(info.token, info.expires_on)

    def get_token_info(self, *scopes: str, options: Optional[TokenRequestOptions] = None) -> AccessTokenInfo:
        """Like get_token, with ``refresh_on``; ``options`` may carry ``claims``."""
        claims = options.get("claims") if options else None
        if claims is None:
            entry = self._hit(scopes)
            if entry is not None:
                return entry.info
        return self._acquire(scopes, claims)

    def _acquire(self, scopes: tuple[str, ...], claims: object) -> AccessTokenInfo:
        trace, request = self._plan(scopes, claims)
        with trace:  # the acquisition's span, when tracing is on: current while the request runs
            try:
                info: AccessTokenInfo = request()
            except Exception as error:
                trace.report_failure(error)
                raise
            trace.report(info)
        return info

    def close(self) -> None:
        """Release the HTTP connections. Cached tokens stay for other credentials that share them."""
        self._driver.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]] = None,
        exc_value: Optional[BaseException] = None,
        traceback: Optional[TracebackType] = None,
    ) -> None:
        self.close()
