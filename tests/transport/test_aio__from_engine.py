"""Hand-off from the engine helper (issue 27), to fold into test_aio.py of this folder: the async driver's single
flight (``_transport/aio.py`` ``single_flight``) hands a failed leader's error to every waiting task.

Moved from test_mutation_guards.py (the tests folder's root, before issue 27).
"""

from __future__ import annotations

import asyncio

from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentityError
from msi_credential._engine import cache

RESOURCE = "https://storage.azure.com"


async def test_tasks_waiting_on_a_failed_flight_receive_its_error_and_send_nothing() -> None:
    from msi_credential._transport.aio import single_flight

    bucket = cache.Bucket()
    release = asyncio.Event()
    requests = 0

    async def request() -> AccessTokenInfo:
        nonlocal requests
        requests += 1
        if requests == 1:
            await release.wait()
            raise ManagedIdentityError("leader failed", error_code="forbidden")
        return AccessTokenInfo("re-requested", 0)

    calls = [asyncio.ensure_future(single_flight(bucket, RESOURCE, request, lambda: None)) for _ in range(16)]
    await asyncio.sleep(0)  # every task joins the flight
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert [getattr(o, "error_code", o) for o in outcomes] == ["forbidden"] * 16
    assert requests == 1
