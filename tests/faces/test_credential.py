"""msi_credential/_credential.py and msi_credential/aio/_credential.py, the two faces: what get_token takes,
the context managers and what azure-identity's chains call, the async face without aiohttp, and that no secret
reaches a log, an error or a repr for any source. Both faces through the ``face`` fixture (tests/conftest.py)
against the emulator; the async face without aiohttp in a child interpreter."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.emulator import Emulator, Fault, UserAssignedIdentity

from ..transport.support import SCOPE
from .support import STORAGE, secrets_of

# -------------------------------------------------------------------------------------- get_token's arguments


def test_tenant_id_and_enable_cae_do_not_change_the_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    credential.get_token(STORAGE, tenant_id="other-tenant", enable_cae=True)

    assert set(emulator.requests[0].query) == {"api-version", "resource"}


# ----------------------------------------------------- closing: the context managers, azure-identity's chains


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


# A pickled credential keeps the AKS token proxy opt-in.


@pytest.fixture
def proxy(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("workload_identity", token_proxy=True)
    return started


def test_a_pickled_credential_keeps_the_opt_in(proxy: Emulator) -> None:
    from msi_credential import ManagedIdentityCredential

    credential = ManagedIdentityCredential(enable_azure_proxy=True, share_cache=False)
    copy = pickle.loads(pickle.dumps(credential))
    assert copy._arguments["enable_azure_proxy"] is True


# The credential's own
# contract: ``timeout`` must be a positive number, the sync credential is usable after close(), and pickling: a
# pickled credential works where it is unpickled (another interpreter too) and carries no secret or token, and one
# with a caller's transport refuses to be pickled. The emulator.


@pytest.mark.parametrize("value", [0, -1, "5", True, float("nan")])
def test_timeout_must_be_a_positive_number(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        face.credential(timeout=value)


def test_sync_credential_is_usable_after_close(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    credential.get_token(SCOPE)
    credential.close()

    assert credential.get_token("https://vault.azure.net/.default").token


def _set_environment(monkeypatch: Any, environ: dict[str, str]) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@pytest.mark.parametrize("face", ["sync", "async"])
def test_a_pickled_credential_works_where_it_is_unpickled_and_carries_no_secret_or_token(
    emulator_factory: Any, monkeypatch: Any, face: str
) -> None:
    import asyncio

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    emulator = emulator_factory(
        "app_service", identities=[UserAssignedIdentity("client-a", "object-a", "/a")]
    )
    _set_environment(monkeypatch, emulator.environ)
    kind = ManagedIdentityCredential if face == "sync" else AsyncCredential
    credential = kind(client_id="client-a", share_cache=False, retry_total=2)
    if face == "sync":
        token = credential.get_token(SCOPE).token
    else:
        token = asyncio.run(credential.get_token(SCOPE)).token

    data = pickle.dumps(credential)
    copy = pickle.loads(data)

    assert emulator.secret.encode() not in data
    assert token.encode() not in data
    assert b"Lock" not in data and b"socket" not in data
    assert type(copy) is kind
    assert copy.source == credential.source
    if face == "sync":
        assert copy.get_token(SCOPE).token  # its own cache: a request of its own
    else:
        assert asyncio.run(copy.get_token(SCOPE)).token
    assert len(emulator.requests) == 2
    assert emulator.requests[-1].query["client_id"] == "client-a"


def test_a_pickled_credential_gets_a_token_in_a_new_interpreter(
    emulator_factory: Any, monkeypatch: Any
) -> None:
    emulator = emulator_factory("app_service")
    _set_environment(monkeypatch, emulator.environ)
    data = pickle.dumps(ManagedIdentityCredential(retry_total=0))
    environment = {
        name: value
        for name, value in os.environ.items()
        if "proxy" not in name.lower() and name != "PYTHONPATH"
    }
    environment.update(emulator.environ, NO_PROXY="*", PYTHONPATH=os.getcwd())
    program = (
        "import pickle, sys\n"
        "credential = pickle.loads(sys.stdin.buffer.read())\n"
        "token = credential.get_token('https://storage.azure.com/.default')\n"
        "print(credential.source.value, bool(token.token))\n"
    )

    finished = subprocess.run(
        [sys.executable, "-c", program],
        input=data,
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr.decode()
    assert finished.stdout.decode().split() == ["app_service", "True"]
    assert len(emulator.requests) == 1


def test_a_credential_with_a_transport_refuses_to_be_pickled(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    emulator = emulator_factory("app_service")
    credential = ManagedIdentityCredential(_environ=emulator.environ, transport=RequestsTransport())

    with pytest.raises(TypeError, match="transport"):
        pickle.dumps(credential)
