"""msi_credential/_observe.py: where a token came from, at DEBUG: one record per acquisition past the
cache-hit path, none on a hit. The sync face (and the async face once) against the emulator."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential, get_bearer_token_provider
from msi_credential.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from msi_credential.emulator import Emulator, Fault

from ..engine.scripted import Clock
from ..faces.support import STORAGE

pytestmark = pytest.mark.usefixtures("debug")  # every test at DEBUG (the fixture: tests/conftest.py)


def origin_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if hasattr(record, "token_source")]


def assert_no_token_in(records: list[logging.LogRecord], emulator: Emulator) -> None:
    text = "\n".join(record.getMessage() + repr(record.__dict__) for record in records)
    for token in emulator.issued_tokens():
        assert token not in text
        assert token.split(".")[1] not in text


def credential_for(emulator: Emulator, **kwargs: Any) -> ManagedIdentityCredential:
    kwargs.setdefault("_environ", emulator.environ)
    return ManagedIdentityCredential(share_cache=False, _sleep=lambda s: None, **kwargs)


def test_one_record_for_a_token_from_the_endpoint_none_for_cache_hits(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    with credential_for(emulator) as credential:
        credential.get_token(STORAGE)
        for _ in range(10):
            credential.get_token(STORAGE)
            credential.get_token_info(STORAGE)
        provider = get_bearer_token_provider(credential, STORAGE)
        for _ in range(10):
            provider()

    [record] = origin_records(caplog)
    assert record.levelno == logging.DEBUG
    assert record.token_origin == "endpoint"  # type: ignore[attr-defined]
    assert record.token_source == "imds"  # type: ignore[attr-defined]
    assert (
        "IMDS: token for https://storage.azure.com from the endpoint (1 HTTP request; " in record.getMessage()
    )
    assert_no_token_in(caplog.records, emulator)


def test_retries_are_counted_in_the_one_record(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    emulator.script(Fault(500), Fault(503))
    with credential_for(emulator) as credential:
        credential.get_token(STORAGE)

    [record] = origin_records(caplog)
    assert "from the endpoint (3 HTTP requests; " in record.getMessage()


def test_a_claims_request_says_so(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    with credential_for(emulator) as credential:
        credential.get_token(STORAGE)
        credential.get_token(STORAGE, claims='{"access_token":{}}')

    first, second = origin_records(caplog)
    assert first.token_origin == "endpoint"  # type: ignore[attr-defined]
    assert "with the claims challenge, 1 HTTP request" in second.getMessage()
    assert second.token_origin == "endpoint"  # type: ignore[attr-defined]


def test_a_call_served_while_its_refresh_runs_beside_it_is_from_the_cache(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock(time.time())
    with credential_for(emulator, _clock=clock, _random=lambda: 0.0, retry_total=0) as credential:
        first = credential.get_token(STORAGE).token
        clock.now += 3600 - 299  # past refresh_on, before the mandatory window
        emulator.script(Fault(500))

        assert credential.get_token(STORAGE).token == first
        assert credential._driver.settle(30)

    endpoint, cached = origin_records(caplog)
    assert endpoint.token_origin == "endpoint"  # type: ignore[attr-defined]
    assert cached.token_origin == "cache"  # type: ignore[attr-defined]
    assert "from the cache (the cached token is still valid; it is refreshed beside this call" in (
        cached.getMessage()
    )


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="the machine cache is POSIX-only")
def test_a_token_from_the_machine_cache_says_so(
    emulator: Emulator, caplog: pytest.LogCaptureFixture, tmp_path: Any
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    environ = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    for _ in range(
        2
    ):  # the second credential's own cache is empty: the machine cache has the first one's token
        with credential_for(emulator, _environ=environ, machine_cache=True) as credential:
            credential.get_token(STORAGE)

    endpoint, machine = origin_records(caplog)
    assert endpoint.token_origin == "endpoint"  # type: ignore[attr-defined]
    assert machine.token_origin == "cache"  # type: ignore[attr-defined]
    assert "from the cache (found in the machine cache;" in machine.getMessage()


def test_concurrent_misses_one_request_every_record_says_where_its_token_came_from(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    emulator.delay = 0.05  # the request stays in flight while the others arrive
    barrier = threading.Barrier(8)
    with credential_for(emulator) as credential:

        def call() -> None:
            barrier.wait()
            credential.get_token(STORAGE)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    records = origin_records(caplog)
    assert emulator.tokens_issued == 1
    assert 1 <= len(records) <= 8  # a late thread may hit the cache: no record
    assert {record.token_origin for record in records} == {"endpoint"}  # type: ignore[attr-defined]
    assert sum("1 HTTP request" in record.getMessage() for record in records) == 1
    assert all(
        "1 HTTP request" in record.getMessage()
        or "waited for another caller's request" in record.getMessage()
        for record in records
    )


def test_a_failure_gets_one_record_without_a_token(
    emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = emulator_factory("app_service")
    with (
        ManagedIdentityCredential(
            client_id="00000000-0000-0000-0000-00000000dead", _environ=emulator.environ, share_cache=False
        ) as credential,
        pytest.raises(CredentialUnavailableError),
    ):
        credential.get_token(STORAGE)

    [record] = origin_records(caplog)
    assert record.token_origin is None  # type: ignore[attr-defined]
    assert (
        "no token for https://storage.azure.com (identity_not_found) after 1 HTTP request(s)"
        in record.getMessage()
    )


def test_nothing_is_recorded_when_debug_is_off(emulator: Emulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="msi_credential")
    with credential_for(emulator) as credential:
        credential.get_token(STORAGE)
    assert origin_records(caplog) == []


async def test_async_one_record_per_request_none_for_hits(
    emulator: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    async with AsyncManagedIdentityCredential(_environ=emulator.environ, share_cache=False) as credential:
        await credential.get_token(STORAGE)
        for _ in range(10):
            await credential.get_token(STORAGE)

    [record] = origin_records(caplog)
    assert record.token_origin == "endpoint"  # type: ignore[attr-defined]
    assert (
        "IMDS: token for https://storage.azure.com from the endpoint (1 HTTP request; " in record.getMessage()
    )
    assert_no_token_in(caplog.records, emulator)
