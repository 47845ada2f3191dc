"""azure-keyvault-secrets' SecretClient, sync and async, on our credential, against a Key Vault stand-in.

The stand-in speaks Key Vault's challenge protocol over HTTPS on loopback: the client's first request goes out
without a token and gets ``401 WWW-Authenticate: Bearer authorization="https://login.microsoftonline.com/<tenant>",
resource="https://vault.azure.net"``; the client then asks the credential for that resource's scope with the
challenge's ``tenant_id`` and ``enable_cae=True``; the stand-in accepts only a token whose ``aud`` is the vault
resource and whose ``tid`` is the challenge's tenant. The credential gets its tokens from the IMDS emulator.

The vault URL is ``https://<name>.vault.azure.net``, connected to 127.0.0.1 without any DNS lookup
(tests/loopback_resolve.py), so the client's check that the challenge resource matches the vault host stays on.
"""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.transport import RequestsTransport
from azure.keyvault.secrets import SecretClient
from azure.keyvault.secrets.aio import SecretClient as AsyncSecretClient

from msi_credential.emulator import Emulator, decode_jwt

from ..https_stand_in import CAE_CLAIMS, KeyVaultStandIn, Tls
from ..loopback_resolve import aiohttp_resolving_session, resolving_session
from .conftest import async_credential, sync_credential

pytestmark = pytest.mark.e2e

TENANT = "8f1c6a52-3d0e-4b8e-9a51-3c2b7d9e4f10"
VAULT_SCOPE = "https://vault.azure.net/.default"
CALLS = 20


@pytest.fixture
def vault_host() -> str:
    # a fresh name per test: the Key Vault client caches challenges per host for the whole process
    return f"msi-{uuid.uuid4().hex[:12]}.vault.azure.net"


@pytest.fixture
def vault(vault_tls: Tls, vault_host: str) -> Iterator[KeyVaultStandIn]:
    stand_in = KeyVaultStandIn(vault_tls, TENANT, vault_host=vault_host)
    yield stand_in
    stand_in.stop()


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator("imds", tenant_id=TENANT) as running:
        yield running


@pytest.fixture(autouse=True)
def no_dns_for_the_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    """The vault's public name must never be looked up: it goes to loopback by the transport alone."""
    original = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, (str, bytes)) and str(host).lower().rstrip(".").endswith("vault.azure.net"):
            raise AssertionError(f"DNS lookup of {host!r}")
        return original(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


def present(options: Any) -> dict[str, Any]:
    """The options a client set (some SDK versions also pass ``claims=None``)."""
    return {key: value for key, value in (options or {}).items() if value is not None}


class CallRecorder:
    """Passes calls to our credential and notes what the client asked for (a spy, not a stand-in)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[tuple[str, ...], Any]] = []

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        self.calls.append((scopes, present(options)))
        info: AccessTokenInfo = self.inner.get_token_info(*scopes, options=options)
        return info


class AsyncCallRecorder(CallRecorder):
    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:  # type: ignore[override]
        self.calls.append((scopes, present(options)))
        info: AccessTokenInfo = await self.inner.get_token_info(*scopes, options=options)
        return info


def sync_client(vault: KeyVaultStandIn, tls: Tls, credential: Any, **kwargs: Any) -> SecretClient:
    host = vault.vault_url.split("//", 1)[1]
    transport = RequestsTransport(
        session=resolving_session({host: vault.server.port}),
        session_owner=True,
        connection_verify=tls.ca_path,
    )
    return SecretClient(vault.vault_url, credential, transport=transport, **kwargs)


def async_client(vault: KeyVaultStandIn, tls: Tls, credential: Any) -> AsyncSecretClient:
    from azure.core.pipeline.transport import AioHttpTransport

    host = vault.vault_url.split("//", 1)[1]
    transport = AioHttpTransport(
        session=aiohttp_resolving_session({host: vault.server.port}),
        session_owner=True,
        connection_verify=tls.ca_path,
    )
    return AsyncSecretClient(vault.vault_url, credential, transport=transport)


@contextlib.contextmanager
def recorded_sync_client(
    vault: KeyVaultStandIn, tls: Tls, emulator: Emulator
) -> Iterator[tuple[CallRecorder, SecretClient]]:
    """A SecretClient on our sync credential, through a recorder of what the client asks it for."""
    with sync_credential(emulator) as credential:
        recorder = CallRecorder(credential)
        with sync_client(vault, tls, recorder) as client:
            yield recorder, client


@contextlib.asynccontextmanager
async def recorded_async_client(
    vault: KeyVaultStandIn, tls: Tls, emulator: Emulator
) -> AsyncIterator[tuple[AsyncCallRecorder, AsyncSecretClient]]:
    """The same with the async client and credential."""
    async with async_credential(emulator) as credential:
        recorder = AsyncCallRecorder(credential)
        async with async_client(vault, tls, recorder) as client:
            yield recorder, client


def assert_one_vault_token(emulator: Emulator, vault: KeyVaultStandIn) -> str:
    assert emulator.tokens_issued == 1
    [token] = emulator.issued_tokens()
    claims = decode_jwt(token)
    assert claims["aud"] == "https://vault.azure.net"
    assert claims["tid"] == TENANT
    assert [request.query["resource"] for request in emulator.requests] == ["https://vault.azure.net"]
    # the first request went without a token and met the challenge; every other one carried our token
    assert vault.calls[0].bearer is None
    assert {call.bearer for call in vault.calls[1:]} == {token}
    return token


def expected_options(claims: Any = None) -> dict[str, Any]:
    options: dict[str, Any] = {"enable_cae": True, "tenant_id": TENANT}
    if claims is not None:
        options["claims"] = claims
    return options


def test_sync_secret_client_one_token_for_many_calls(
    vault: KeyVaultStandIn, vault_tls: Tls, emulator: Emulator
) -> None:
    with recorded_sync_client(vault, vault_tls, emulator) as (recorder, client):
        client.set_secret("db-password", "s3cret value")
        for _ in range(CALLS):
            assert client.get_secret("db-password").value == "s3cret value"

    assert_one_vault_token(emulator, vault)
    assert len(vault.accepted) == CALLS + 1
    # the challenge's scope and tenant reached the credential, with CAE on
    assert recorder.calls == [((VAULT_SCOPE,), expected_options())]


def test_sync_cae_claims_challenge_answered_with_a_fresh_token(
    vault: KeyVaultStandIn, vault_tls: Tls, emulator: Emulator
) -> None:
    with recorded_sync_client(vault, vault_tls, emulator) as (recorder, client):
        client.set_secret("api-key", "v1")
        first = assert_one_vault_token(emulator, vault)
        vault.revoke([first])

        assert client.get_secret("api-key").value == "v1"
        for _ in range(CALLS):
            client.get_secret("api-key")

    assert emulator.tokens_issued == 2
    second = emulator.issued_tokens()[1]
    assert second != first
    assert [call.bearer for call in vault.calls[-(CALLS + 2) :]] == [first, second] + [second] * CALLS
    assert recorder.calls[-1] == ((VAULT_SCOPE,), expected_options(CAE_CLAIMS))


def test_sync_a_token_of_another_tenant_is_refused(vault: KeyVaultStandIn, vault_tls: Tls) -> None:
    # a managed identity's tokens are always from its own tenant: tenant_id= cannot change that (as azure-identity)
    with (
        Emulator("imds", tenant_id=str(uuid.uuid4())) as other,
        sync_credential(other) as credential,
        sync_client(vault, vault_tls, credential) as client,
        pytest.raises((ClientAuthenticationError, HttpResponseError)) as caught,
    ):
        client.get_secret("anything")
    assert caught.value.status_code == 401
    assert vault.accepted == []


def test_sync_loopback_vault_url_needs_the_resource_check_off(vault_tls: Tls, emulator: Emulator) -> None:
    stand_in = KeyVaultStandIn(vault_tls, TENANT)  # https://127.0.0.1:<port>
    try:
        with sync_credential(emulator) as credential:
            transport = RequestsTransport(use_env_settings=False, connection_verify=vault_tls.ca_path)
            with (
                SecretClient(stand_in.vault_url, credential, transport=transport) as client,
                pytest.raises(ValueError, match="verify_challenge_resource"),
            ):
                client.get_secret("x")
            assert emulator.tokens_issued == 0  # refused before any token was asked for

            stand_in.secrets["x"] = ("1", "value")
            with SecretClient(
                stand_in.vault_url,
                credential,
                transport=RequestsTransport(use_env_settings=False, connection_verify=vault_tls.ca_path),
                verify_challenge_resource=False,
            ) as client:
                assert client.get_secret("x").value == "value"
    finally:
        stand_in.stop()


async def test_async_secret_client_one_token_for_many_calls(
    vault: KeyVaultStandIn, vault_tls: Tls, emulator: Emulator
) -> None:
    async with recorded_async_client(vault, vault_tls, emulator) as (recorder, client):
        await client.set_secret("db-password", "s3cret value")
        for _ in range(CALLS):
            assert (await client.get_secret("db-password")).value == "s3cret value"

    assert_one_vault_token(emulator, vault)
    assert recorder.calls == [((VAULT_SCOPE,), expected_options())]


async def test_async_cae_claims_challenge_answered_with_a_fresh_token(
    vault: KeyVaultStandIn, vault_tls: Tls, emulator: Emulator
) -> None:
    async with recorded_async_client(vault, vault_tls, emulator) as (recorder, client):
        await client.set_secret("api-key", "v1")
        first = assert_one_vault_token(emulator, vault)
        vault.revoke([first])

        assert (await client.get_secret("api-key")).value == "v1"
        for _ in range(CALLS):
            await client.get_secret("api-key")

    assert emulator.tokens_issued == 2
    second = emulator.issued_tokens()[1]
    assert [call.bearer for call in vault.calls[-(CALLS + 2) :]] == [first, second] + [second] * CALLS
    assert recorder.calls[-1] == ((VAULT_SCOPE,), expected_options(CAE_CLAIMS))
