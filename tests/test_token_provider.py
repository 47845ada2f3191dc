"""get_bearer_token_provider, sync and async: azure-identity's contract, served from the credential's cache."""

from __future__ import annotations

import asyncio
import time
import tracemalloc
from typing import Any, Optional

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

import msi_credential
import msi_credential.aio
from msi_credential import ManagedIdentityCredential, get_bearer_token_provider
from msi_credential.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from msi_credential.emulator import Emulator

COGNITIVE = "https://cognitiveservices.azure.com/.default"


@pytest.fixture
def emulator(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("imds")
    return started


def token_requests(emulator: Emulator) -> int:
    return emulator.tokens_issued


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def sync_credential(emulator: Emulator, **kwargs: Any) -> ManagedIdentityCredential:
    return ManagedIdentityCredential(_environ=emulator.environ, share_cache=False, **kwargs)


def async_credential(emulator: Emulator, **kwargs: Any) -> AsyncManagedIdentityCredential:
    return AsyncManagedIdentityCredential(_environ=emulator.environ, share_cache=False, **kwargs)


class RecordingCredential:
    """A foreign credential (not ours): records how a provider calls it."""

    def __init__(self, token_info: bool) -> None:
        self.calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.counter = 0
        if token_info:
            self.get_token_info = self._get_token_info

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append((scopes, kwargs))
        self.counter += 1
        return AccessToken(f"foreign-{self.counter}", int(time.time()) + 3600)

    def _get_token_info(self, *scopes: str, options: Optional[dict[str, Any]] = None) -> AccessTokenInfo:
        self.calls.append((scopes, {"options": options}))
        self.counter += 1
        return AccessTokenInfo(f"foreign-{self.counter}", int(time.time()) + 3600)


class AsyncRecordingCredential(RecordingCredential):
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return RecordingCredential.get_token(self, *scopes, **kwargs)


def test_public_names_are_where_api_md_puts_them() -> None:
    assert "get_bearer_token_provider" in msi_credential.__all__
    assert "get_bearer_token_provider" in msi_credential.aio.__all__
    assert msi_credential.get_bearer_token_provider is not msi_credential.aio.get_bearer_token_provider


def test_provider_returns_the_cached_token_string_with_one_request_for_many_calls(emulator: Emulator) -> None:
    with sync_credential(emulator) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        assert token_requests(emulator) == 0  # lazily: nothing is requested before the first call

        tokens = [provider() for _ in range(100)]

        assert token_requests(emulator) == 1
        assert tokens[0] == emulator.issued_tokens()[0]
        cached = credential.get_token_info(COGNITIVE).token
        assert all(token is cached for token in tokens)  # the cached string itself: nothing built per call


def test_provider_hot_path_allocates_nothing(emulator: Emulator) -> None:
    with sync_credential(emulator) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        provider()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(1000):
                provider()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ours = tracemalloc.Filter(True, "*msi_credential*")
        growth = [
            stat
            for stat in after.filter_traces([ours]).compare_to(before.filter_traces([ours]), "lineno")
            if stat.count_diff > 0
        ]
        assert growth == []


def test_provider_refreshes_through_the_credential_when_the_token_is_due(emulator: Emulator) -> None:
    clock = Clock()
    with sync_credential(emulator, _clock=clock, _random=lambda: 0.0) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        first = provider()
        clock.now += 3600 - 299  # past refresh_on (5 minutes before expiry for a 1 h token)

        during = provider()  # at once: the refresh runs beside the call
        assert credential._driver.settle(30)
        second = provider()

        assert token_requests(emulator) == 2
        assert during == first
        assert second != first
        assert provider() is second


def test_provider_sees_a_token_replaced_by_a_claims_request(emulator: Emulator) -> None:
    with sync_credential(emulator) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        first = provider()
        fresh = credential.get_token_info(COGNITIVE, options={"claims": '{"access_token":{}}'}).token

        assert fresh != first
        assert provider() == fresh


def test_same_calls_as_azure_identitys_provider_for_a_foreign_credential() -> None:
    from azure.identity import get_bearer_token_provider as identity_provider

    for token_info in (True, False):
        ours, theirs = RecordingCredential(token_info), RecordingCredential(token_info)

        assert get_bearer_token_provider(ours, COGNITIVE)() == identity_provider(theirs, COGNITIVE)()
        assert ours.calls == theirs.calls  # same method, same scopes, same options
        assert len(ours.calls) == 1


def test_argument_errors_surface_from_the_call_as_with_azure_identity(emulator: Emulator) -> None:
    from azure.identity import get_bearer_token_provider as identity_provider

    with sync_credential(emulator) as credential:
        for scopes in ((), (COGNITIVE, "https://vault.azure.net/.default"), ("  ",)):
            ours, theirs = (
                get_bearer_token_provider(credential, *scopes),
                identity_provider(credential, *scopes),
            )
            with pytest.raises(ValueError):
                ours()
            with pytest.raises(ValueError):
                theirs()
        assert token_requests(emulator) == 0


def test_azure_identitys_provider_on_our_credential_gives_the_same_token(emulator: Emulator) -> None:
    from azure.identity import get_bearer_token_provider as identity_provider

    with sync_credential(emulator) as credential:
        assert (
            identity_provider(credential, COGNITIVE)() == get_bearer_token_provider(credential, COGNITIVE)()
        )
        assert token_requests(emulator) == 1


def test_a_subclass_that_overrides_get_token_info_is_called(emulator: Emulator) -> None:
    calls: list[str] = []

    class Audited(ManagedIdentityCredential):
        def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
            calls.append(scopes[0])
            return super().get_token_info(*scopes, options=options)

    with Audited(_environ=emulator.environ, share_cache=False) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        provider()
        provider()
    assert calls  # the policy path: the override runs (azure-core's policy caches between calls)


# ---------------------------------------------------------------------------------------------------- async


async def test_async_provider_one_request_for_many_concurrent_calls(emulator: Emulator) -> None:
    async with async_credential(emulator) as credential:
        provider = msi_credential.aio.get_bearer_token_provider(credential, COGNITIVE)
        assert token_requests(emulator) == 0

        tokens = await asyncio.gather(*(provider() for _ in range(50)))

        assert token_requests(emulator) == 1
        assert set(tokens) == {emulator.issued_tokens()[0]}
        cached = (await credential.get_token_info(COGNITIVE)).token
        assert await provider() is cached


async def test_async_provider_refreshes_when_due(emulator: Emulator) -> None:
    clock = Clock()
    async with async_credential(emulator, _clock=clock, _random=lambda: 0.0) as credential:
        provider = msi_credential.aio.get_bearer_token_provider(credential, COGNITIVE)
        first = await provider()
        clock.now += 3600 - 299

        during = await provider()  # at once: the refresh runs beside the call
        await credential._driver.settle()
        second = await provider()

        assert token_requests(emulator) == 2
        assert during == first
        assert second != first


async def test_async_same_calls_as_azure_identitys_provider_for_a_foreign_credential() -> None:
    from azure.identity.aio import get_bearer_token_provider as identity_provider

    ours, theirs = AsyncRecordingCredential(False), AsyncRecordingCredential(False)

    assert (
        await msi_credential.aio.get_bearer_token_provider(ours, COGNITIVE)()
        == await identity_provider(theirs, COGNITIVE)()
    )
    assert ours.calls == theirs.calls
    assert len(ours.calls) == 1


async def test_async_argument_errors_surface_from_the_call(emulator: Emulator) -> None:
    async with async_credential(emulator) as credential:
        provider = msi_credential.aio.get_bearer_token_provider(credential)
        with pytest.raises(ValueError):
            await provider()
    assert token_requests(emulator) == 0


async def test_async_azure_identitys_provider_on_our_credential_gives_the_same_token(
    emulator: Emulator,
) -> None:
    from azure.identity.aio import get_bearer_token_provider as identity_provider

    async with async_credential(emulator) as credential:
        theirs = await identity_provider(credential, COGNITIVE)()
        ours = await msi_credential.aio.get_bearer_token_provider(credential, COGNITIVE)()
        assert theirs == ours
        assert token_requests(emulator) == 1
