"""Hand-off from the engine helper (issue 27), to fold into test_sync.py of this folder: the sync driver's single
flight (``_transport/sync.py`` ``single_flight``) hands a failed leader's error to every waiting thread. The comment
above the test names the one-line change that it catches.

Moved from test_mutation_guards.py (the tests folder's root, before issue 27).
"""

from __future__ import annotations

import threading

from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentityError
from msi_credential._engine import cache

RESOURCE = "https://storage.azure.com"


def _failing_leader(bucket: cache.Bucket, waiters: int) -> tuple[list[object], int]:
    """``waiters + 1`` threads miss the cache together; the leader's request fails once every waiter waits."""
    from msi_credential._transport.sync import single_flight

    all_waiting = threading.Event()
    leader_requesting = threading.Event()
    lock = threading.Lock()
    waiting = 0
    requests = 0
    outcomes: list[object] = []

    def still_valid() -> None:
        nonlocal waiting
        with lock:
            waiting += 1
            if waiting == waiters:
                all_waiting.set()

    def request() -> AccessTokenInfo:
        nonlocal requests
        with lock:
            requests += 1
        if requests == 1:
            leader_requesting.set()
            assert all_waiting.wait(30)
            raise ManagedIdentityError("leader failed", error_code="forbidden")
        return AccessTokenInfo("re-requested", 0)

    def work() -> None:
        try:
            outcomes.append(single_flight(bucket, RESOURCE, request, still_valid))  # type: ignore[arg-type]
        except ManagedIdentityError as error:
            outcomes.append(error.error_code)

    leader = threading.Thread(target=work)
    leader.start()
    assert leader_requesting.wait(30)  # the leader has registered its flight and is sending
    threads = [threading.Thread(target=work) for _ in range(waiters)]
    for thread in threads:
        thread.start()
    for thread in [leader, *threads]:
        thread.join(30)
    return outcomes, requests


# change: single-flight waiters re-request instead of receiving the leader's error
def test_threads_waiting_on_a_failed_flight_receive_its_error_and_send_nothing() -> None:
    outcomes, requests = _failing_leader(cache.Bucket(), waiters=15)

    assert outcomes == ["forbidden"] * 16
    assert requests == 1
