"""msi_credential/_credential.py and msi_credential/aio/_credential.py, the two faces: what get_token takes,
the context managers, use after close() and what azure-identity's chains call, the async face without aiohttp, and
that no secret reaches a log, an error or a repr for any source. Both faces through the ``face`` fixture
(tests/conftest.py) against the emulator; the async face without aiohttp in a child interpreter. What the
constructor takes and pickling (msi_credential/_setup.py): test_setup.py."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.emulator import Fault

from .support import STORAGE, secrets_of

# -------------------------------------------------------------------------------------- get_token's arguments


def test_tenant_id_and_enable_cae_do_not_change_the_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    credential.get_token(STORAGE, tenant_id="other-tenant", enable_cae=True)

    assert set(emulator.requests[0].query) == {"api-version", "resource"}


# ---------------------------------- closing: the context managers, use after close(), azure-identity's chains


def test_leaving_the_context_manager_closes_the_supplied_transport(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    class Recording(RequestsTransport):
        closed = 0

        def close(self) -> None:
            Recording.closed += 1
            super().close()

    emulator = emulator_factory("imds")
    with ManagedIdentityCredential(
        _environ=emulator.environ, share_cache=False, transport=Recording()
    ) as credential:
        assert credential.get_token(STORAGE).token
        assert Recording.closed == 0

    assert Recording.closed >= 1


async def test_leaving_the_async_context_manager_closes_the_supplied_transport(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import AioHttpTransport

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    class Recording(AioHttpTransport):
        closed = 0

        async def close(self) -> None:
            Recording.closed += 1
            await super().close()

    emulator = emulator_factory("imds")
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=Recording()
    ) as credential:
        assert (await credential.get_token(STORAGE)).token
        assert Recording.closed == 0

    assert Recording.closed >= 1


def test_sync_credential_is_usable_after_close(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    credential.get_token(STORAGE)
    credential.close()

    assert credential.get_token("https://vault.azure.net/.default").token


def test_azure_identity_chain_gets_a_token_and_closes_the_credential(
    face: Any, emulator_factory: Any
) -> None:
    """azure-identity's ChainedTokenCredential.close() calls ``__exit__()`` / ``__aexit__()`` with no arguments."""
    if face.is_async:
        from azure.identity.aio import ChainedTokenCredential
    else:
        from azure.identity import ChainedTokenCredential
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)
    chain = ChainedTokenCredential(credential.inner)

    assert face._run(chain.get_token(STORAGE)).token
    face._run(chain.close())
    face._run(chain.close())
    # what azure-core's protocols declare and chains of other libraries call: the exit methods without arguments
    face._run(credential.inner.__aexit__() if face.is_async else credential.inner.__exit__())


# ----------------------------------------------------------------------------- the async face without aiohttp


SCRIPT = textwrap.dedent(
    """
    import asyncio, hashlib, sys
    sys.modules["aiohttp"] = None  # as if the aio extra were not installed
    from msi_credential.aio import ManagedIdentityCredential
    from msi_credential.emulator import Emulator
    from msi_credential._transport.aio import aiohttp_available

    assert not aiohttp_available()

    async def main():
        for source in ("imds", "app_service", "azure_arc", "service_fabric"):
            with Emulator(source) as emulator:
                async with ManagedIdentityCredential(
                    _environ=emulator.environ, share_cache=False, **emulator.credential_kwargs
                ) as credential:
                    token = await credential.get_token("https://storage.azure.com/.default")
                    assert token.token
                print(source, "ok")
        with Emulator("service_fabric") as emulator:
            environ = dict(emulator.environ, IDENTITY_SERVER_THUMBPRINT=hashlib.sha1(b"x").hexdigest())
            async with ManagedIdentityCredential(_environ=environ, share_cache=False) as credential:
                try:
                    await credential.get_token("https://storage.azure.com/.default")
                except Exception as error:
                    print("pin", error.error_code, len(emulator.requests))

    asyncio.run(main())
    """
)


def test_async_credential_works_without_aiohttp() -> None:
    """The async credential imports and works when aiohttp is not installed (azure-core's requests-in-a-thread)."""
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert "imds ok" in lines and "service_fabric ok" in lines and "azure_arc ok" in lines
    assert "pin thumbprint_mismatch 0" in lines


# --------------------------------------------------------------------- no secret in a log, an error or a repr


SOURCES = ["imds", "app_service", "azure_arc", "cloud_shell", "service_fabric", "machine_learning"]


@pytest.mark.parametrize("source", SOURCES)
def test_no_secret_reaches_logs_errors_or_reprs(
    face: Any, emulator_factory: Any, caplog: pytest.LogCaptureFixture, source: str
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = emulator_factory(source)
    credential = face.credential(emulator, logging_enable=True, retry_total=1)

    token = credential.get_token(STORAGE)
    credential.get_token(STORAGE, claims='{"access_token":{"nbf":{"essential":true}}}')
    # Failing answers that echo the secrets the endpoint was given, as a careless server might.
    echo = " ".join(
        value for name, value in emulator.environ.items() if name in ("IDENTITY_HEADER", "MSI_SECRET")
    )
    errors: list[ManagedIdentityError] = []
    for fault in (
        Fault(
            500, {"error": "server_error", "error_description": f"echo {echo}", "correlation_id": echo[:60]}
        ),
        Fault(400, {"statusCode": 400, "message": f"bad {echo}", "correlationId": "c"}),
        Fault(200, {"access_token": token.token, "expires_in": "soon"}),
        Fault(403, {"error": {"code": "Forbidden", "message": echo, "correlationId": "c"}}),
    ):
        emulator.script(fault, fault, fault, fault, fault)
        with pytest.raises(ManagedIdentityError) as caught:
            credential.get_token("https://vault.azure.net/.default", claims="{}")
        errors.append(caught.value)

    secrets = secrets_of(emulator)
    assert len(secrets) >= 2
    texts = [record.getMessage() for record in caplog.records]
    texts += [str(error) for error in errors] + [repr(error) for error in errors]
    texts += [repr(credential.inner), str(credential.inner), repr(emulator.requests)]
    leaks = [(secret[:6] + "...", text[:80]) for text in texts for secret in secrets if secret in text]
    assert not leaks, f"{len(leaks)} secret(s) leaked"  # the message itself names no secret


def test_secrets_never_reach_logs_errors_or_reprs(
    face: Any, emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = emulator_factory("app_service")
    secret = emulator.environ["IDENTITY_HEADER"]
    emulator.script(Fault(500, {"message": f"echoing {secret}"}), Fault(500), Fault(500), Fault(500))
    credential = face.credential(emulator, logging_enable=True)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)
    token = credential.get_token(STORAGE).token

    texts = [record.getMessage() for record in caplog.records]
    texts += [str(caught.value), repr(caught.value), repr(credential.inner), str(credential.inner)]
    for text in texts:
        assert secret not in text
        assert token not in text
