"""Soak: 32 threads and 200 tasks call get_token for about a minute against an endpoint whose tokens live 3 s and
which fails 20% of requests with 500/429. No error may reach a caller while a valid token exists, and the request
count must follow the refresh periods, not the calls. Prints its figures. ``MSI_SOAK_SECONDS`` changes the length.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

from .conftest import FIGURES

SCOPE = "https://storage.azure.com/.default"
LIFETIME = 3


@pytest.mark.soak
def test_soak_threads_and_tasks_under_random_failures(emulator_factory: Any) -> None:
    duration = float(os.environ.get("MSI_SOAK_SECONDS", "45"))
    emulator = emulator_factory("app_service", token_lifetime=LIFETIME)
    emulator.fail_randomly(0.2, (500, 429), seed=20261128)
    options = {"_environ": emulator.environ, "retry_total": 5, "retry_backoff_factor": 0.05}
    stop_at = time.monotonic() + duration
    lock = threading.Lock()
    calls = 0
    errors_while_valid: list[str] = []
    errors_after_expiry: list[str] = []
    expired_tokens_returned = 0
    newest_expiry = 0.0

    def record(token: Any = None, error: ManagedIdentityError | None = None) -> None:
        nonlocal calls, expired_tokens_returned, newest_expiry
        now = time.time()
        with lock:
            calls += 1
            if error is not None:
                (errors_while_valid if now < newest_expiry else errors_after_expiry).append(error.error_code)
                return
            newest_expiry = max(newest_expiry, token.expires_on)
            if token.expires_on <= now:
                expired_tokens_returned += 1

    credential = ManagedIdentityCredential(**options)

    def thread_loop() -> None:
        while time.monotonic() < stop_at:
            try:
                record(credential.get_token(SCOPE))
            except ManagedIdentityError as error:
                record(error=error)
            time.sleep(0.001)

    async def task_loop(async_credential: Any) -> None:
        while time.monotonic() < stop_at:
            try:
                record(await async_credential.get_token(SCOPE))
            except ManagedIdentityError as error:
                record(error=error)
            await asyncio.sleep(0.001)

    async def tasks_main() -> None:
        async with AsyncCredential(**options) as async_credential:
            await asyncio.gather(*(task_loop(async_credential) for _ in range(200)))

    threads = [threading.Thread(target=thread_loop) for _ in range(32)]
    threads.append(threading.Thread(target=asyncio.run, args=(tasks_main(),)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 120)
    elapsed = time.monotonic() - started
    credential.close()

    requests = emulator.requests_received
    periods = elapsed / (LIFETIME / 2)
    FIGURES.append(
        f"soak: {elapsed:.1f} s, {calls} calls, {requests} requests ({emulator.random_failures} failed on purpose), "
        f"{emulator.tokens_issued} tokens, {periods:.0f} refresh periods, "
        f"errors while a valid token existed: {len(errors_while_valid)}, after expiry: {len(errors_after_expiry)}, "
        f"expired tokens returned: {expired_tokens_returned}"
    )
    assert not any(thread.is_alive() for thread in threads)
    assert errors_while_valid == []
    assert expired_tokens_returned == 0
    assert calls > 100 * requests
    # integer expiry seconds shorten some periods, and the thread and task flights may each refresh once
    assert emulator.tokens_issued <= 4 * periods + 5
