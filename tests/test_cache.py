"""The token cache: single-flight, refresh windows (injected clock), process-wide sharing, bounded memory."""

from __future__ import annotations

import asyncio
import copy
import gc
import logging
import os
import pickle
import signal
import sys
import threading
import time
import tracemalloc
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo
from azure.core.pipeline.policies import AsyncHTTPPolicy, HTTPPolicy

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential
from msi_credential.emulator import Fault

from .conftest import FIGURES

SCOPE = "https://storage.azure.com/.default"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def _until(condition: Any, limit: int = 3000) -> None:
    """Wait for a condition another thread makes true (polled through an Event's wait, never a bare sleep)."""
    tick = threading.Event()
    for _ in range(limit):
        if condition():
            return
        tick.wait(0.01)
    pytest.fail("timed out")


async def _until_async(condition: Any, limit: int = 3000) -> None:
    """The same in an event loop: its tasks run between the polls."""
    tick = threading.Event()
    for _ in range(limit):
        if condition():
            return
        await asyncio.sleep(0)
        tick.wait(0.001)
    pytest.fail("timed out")


# ---------------------------------------------------------------------------------------------- single-flight


def test_64_threads_on_a_cold_cache_send_one_request(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.delay = 0.05
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    barrier = threading.Barrier(64)
    tokens: list[str] = []

    def work() -> None:
        barrier.wait()
        tokens.append(credential.get_token(SCOPE).token)

    threads = [threading.Thread(target=work) for _ in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(tokens) == 64 and len(set(tokens)) == 1
    assert len(emulator.requests) == 1


def test_threads_of_separate_credentials_sharing_the_cache_send_one_request(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.delay = 0.05
    barrier = threading.Barrier(16)
    tokens: list[str] = []

    def work() -> None:
        credential = ManagedIdentityCredential(_environ=emulator.environ)
        barrier.wait()
        tokens.append(credential.get_token(SCOPE).token)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(tokens)) == 1
    assert len(emulator.requests) == 1


def test_a_failed_flight_leaves_no_thread_waiting_and_only_late_threads_request_again(
    emulator_factory: Any,
) -> None:
    """Threads that joined the flight get its error; a thread arriving after it ended sends its own request.
    That waiters get the leader's error without a request of their own is checked deterministically in
    test_mutation_guards (the threads here race the 0.1 s answer)."""
    emulator = emulator_factory("imds")
    emulator.script(Fault(403, {"error": "forbidden", "error_description": "no"}, delay=0.1))
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    barrier = threading.Barrier(16)
    outcomes: list[object] = []

    def work() -> None:
        barrier.wait()
        try:
            outcomes.append(credential.get_token(SCOPE))
        except ManagedIdentityError as error:
            outcomes.append(error.error_code)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 16
    tokens = [o for o in outcomes if hasattr(o, "token")]
    assert outcomes.count("forbidden") + len(tokens) == 16 and outcomes.count("forbidden") >= 1
    assert len(emulator.requests) == 1 + (1 if tokens else 0)  # late threads share one new flight


class JumpingClock:
    """A monotonic clock that moves 2 s at every reading: a 1 s wait is over by its first check."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 2.0
        return self.now


def test_get_token_from_a_signal_handler_in_the_thread_leading_the_request_gets_a_token(
    emulator_factory: Any,
) -> None:
    """A handler (SIGALRM, SIGTERM cleanup) that asks for the same token while its thread is requesting it must
    not wait on the flight its own thread leads: it makes a request of its own. A watchdog SIGALRM bounds the
    test if it would hang."""
    emulator = emulator_factory("app_service")
    handler_got: list[str] = []
    fired = [False]

    def hook(request: Any) -> None:  # runs in the main thread, while its flight is registered
        if not fired[0]:
            fired[0] = True
            os.kill(os.getpid(), signal.SIGUSR1)

    credential = ManagedIdentityCredential(
        _environ=emulator.environ, share_cache=False, raw_request_hook=hook
    )

    def on_usr1(signum: int, frame: Any) -> None:
        handler_got.append(credential.get_token(SCOPE).token)

    def watchdog(signum: int, frame: Any) -> None:
        raise TimeoutError("get_token in the signal handler waited on its own thread's flight")

    previous = signal.signal(signal.SIGUSR1, on_usr1), signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 20.0)
    try:
        outer = credential.get_token(SCOPE).token
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGALRM, previous[1])

    assert fired[0] and len(handler_got) == 1 and handler_got[0] and outer
    assert len(emulator.requests) == 2  # the handler's own request, then the interrupted one's


def test_get_token_from_a_signal_handler_that_lands_while_its_thread_registers_a_flight_gets_a_token(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signal can land while its thread holds the token cache's bookkeeping lock (registering a flight); a
    handler that asks for a token then takes that lock again in the same thread, which must not deadlock. A
    watchdog SIGALRM bounds the test if it would hang."""
    from msi_credential._transport import sync

    emulator = emulator_factory("app_service")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    handler_got: list[str] = []
    fired = [False]

    class InterruptedFlight(sync._Flight):
        def __init__(self) -> None:
            if not fired[0]:
                fired[0] = True
                os.kill(os.getpid(), signal.SIGUSR1)  # its handler runs here, under the bucket's lock
            super().__init__()

    monkeypatch.setattr(sync, "_Flight", InterruptedFlight)

    def on_usr1(signum: int, frame: Any) -> None:
        handler_got.append(credential.get_token(SCOPE).token)

    def watchdog(signum: int, frame: Any) -> None:
        raise TimeoutError("get_token in the signal handler waited for the lock its own thread holds")

    previous = signal.signal(signal.SIGUSR1, on_usr1), signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 20.0)
    try:
        outer = credential.get_token(SCOPE).token
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGALRM, previous[1])

    assert fired[0] and len(handler_got) == 1 and handler_got[0] and outer
    assert not credential._bucket.flights


def test_close_from_a_signal_handler_that_lands_while_its_thread_holds_the_drivers_lock_returns(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM cleanup that closes the credential can land while its thread holds the driver's lock (building
    its connection pool, registering a refresh beside the callers); close() then takes that lock again in the
    same thread, which must not deadlock. A watchdog SIGALRM bounds the test if it would hang."""
    from msi_credential._transport import sync

    emulator = emulator_factory("app_service")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    closed: list[bool] = []
    fired = [False]
    session = sync.watched_session

    def interrupted_session(**kwargs: Any) -> Any:
        if not fired[0]:
            fired[0] = True
            os.kill(os.getpid(), signal.SIGUSR1)  # its handler runs here, under the driver's lock
        return session(**kwargs)

    monkeypatch.setattr(sync, "watched_session", interrupted_session)

    def on_usr1(signum: int, frame: Any) -> None:
        credential.close()
        closed.append(True)

    def watchdog(signum: int, frame: Any) -> None:
        raise TimeoutError("close() in the signal handler waited for the lock its own thread holds")

    previous = signal.signal(signal.SIGUSR1, on_usr1), signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 20.0)
    try:
        token = credential.get_token(SCOPE).token
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGALRM, previous[1])

    assert fired[0] and closed == [True] and token


def test_a_joining_thread_waits_only_for_its_own_timeout(emulator_factory: Any) -> None:
    """A credential with timeout=1 that joins another credential's in-flight request for the same token gets its
    own timeout error when its second is up, not the leader's answer after the leader's deadline."""
    emulator = emulator_factory("app_service")
    emulator.script(Fault(503))  # the leader retries, and its retry waits in the sleeper the test holds
    in_flight, release = threading.Event(), threading.Event()

    def held_sleep(seconds: float) -> None:
        in_flight.set()
        assert release.wait(30)

    leader = ManagedIdentityCredential(_environ=emulator.environ, _sleep=held_sleep)
    joiner = ManagedIdentityCredential(_environ=emulator.environ, timeout=1, _monotonic=JumpingClock())
    leader_got: list[str] = []
    joiner_got: list[object] = []

    def join() -> None:
        try:
            joiner_got.append(joiner.get_token(SCOPE))
        except ManagedIdentityError as error:
            joiner_got.append(error)

    leading = threading.Thread(target=lambda: leader_got.append(leader.get_token(SCOPE).token))
    leading.start()
    try:
        assert in_flight.wait(30)
        joining = threading.Thread(target=join)
        joining.start()
        joining.join(10)
        joiner_done_first = not joining.is_alive()
    finally:
        release.set()
        leading.join(30)
    joining.join(30)

    assert joiner_done_first
    [error] = joiner_got
    assert isinstance(error, ManagedIdentityError) and error.error_code == "timeout"
    assert "timeout=1 s" in str(error)
    assert leader_got and len(emulator.requests) == 2  # the joiner sent nothing of its own


async def test_a_joining_task_waits_only_for_its_own_timeout(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(503))
    in_flight, release = asyncio.Event(), asyncio.Event()

    async def held_sleep(seconds: float) -> None:
        in_flight.set()
        await release.wait()

    async with (
        AsyncCredential(_environ=emulator.environ, _sleep=held_sleep) as leader,
        AsyncCredential(_environ=emulator.environ, timeout=1, _monotonic=JumpingClock()) as joiner,
    ):
        leading = asyncio.ensure_future(leader.get_token(SCOPE))
        await asyncio.wait_for(in_flight.wait(), 30)
        try:
            with pytest.raises(ManagedIdentityError) as caught:
                await asyncio.wait_for(joiner.get_token(SCOPE), 10)
            leader_waiting = not leading.done()
        finally:
            release.set()
        token = await asyncio.wait_for(leading, 30)

    assert caught.value.error_code == "timeout" and "timeout=1 s" in str(caught.value)
    assert leader_waiting and token.token
    assert len(emulator.requests) == 2


async def test_500_tasks_on_a_cold_cache_send_one_request(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    async with AsyncCredential(_environ=emulator.environ, share_cache=False) as credential:
        tokens = await asyncio.gather(*(credential.get_token(SCOPE) for _ in range(500)))

    assert len({token.token for token in tokens}) == 1
    assert len(emulator.requests) == 1


async def test_a_failed_flight_reaches_every_task(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(403, {"error": "forbidden", "error_description": "no"}, delay=0.05))
    async with AsyncCredential(_environ=emulator.environ, share_cache=False) as credential:
        outcomes = await asyncio.gather(
            *(credential.get_token(SCOPE) for _ in range(50)), return_exceptions=True
        )

    assert all(isinstance(o, ManagedIdentityError) and o.error_code == "forbidden" for o in outcomes)
    assert len(emulator.requests) == 1


async def test_a_cancelled_waiter_does_not_cancel_the_request_for_the_others(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.delay = 0.1
    async with AsyncCredential(_environ=emulator.environ, share_cache=False) as credential:
        first = asyncio.ensure_future(credential.get_token(SCOPE))
        others = [asyncio.ensure_future(credential.get_token(SCOPE)) for _ in range(10)]
        await asyncio.sleep(0)  # let every task join the flight
        first.cancel()
        tokens = await asyncio.gather(*others)

        assert first.cancelled()
        assert len({token.token for token in tokens}) == 1
        assert len(emulator.requests) == 1
        assert (await credential.get_token(SCOPE)).token == tokens[0].token


async def test_a_cancelled_only_caller_leaves_the_credential_usable(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(200, delay=0.2))
    sent = asyncio.Event()
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, raw_request_hook=lambda request: sent.set()
    ) as credential:
        task = asyncio.ensure_future(credential.get_token(SCOPE))
        await sent.wait()  # the request is on its way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        token = await credential.get_token("https://vault.azure.net/.default")

    assert token.token


def test_async_credential_works_across_event_loops(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = AsyncCredential(_environ=emulator.environ, share_cache=False)

    first = asyncio.run(credential.get_token(SCOPE))
    second = asyncio.run(credential.get_token("https://vault.azure.net/.default"))
    third = asyncio.run(credential.get_token(SCOPE, claims='{"access_token":{}}'))
    asyncio.run(credential.close())

    assert first.token and second.token and third.token
    assert len(emulator.requests) == 3


# -------------------------------------------------------------------------------------------- refresh windows


def test_fresh_token_is_served_until_refresh_on(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock)

    info = credential.get_token_info(SCOPE)
    assert info.refresh_on == info.expires_on - 300  # 600 <= lifetime < 7200
    clock.now = info.refresh_on - 1
    credential.get_token(SCOPE)

    assert len(emulator.requests) == 1


def test_advisory_window_refreshes_once_beside_the_callers(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock)
    old = credential.get_token_info(SCOPE)

    clock.now = old.refresh_on + 1
    during = credential.get_token(SCOPE)  # due: returned at once, the refresh runs beside it
    credential.settle()
    new = credential.get_token(SCOPE)
    again = credential.get_token(SCOPE)

    assert during.token == old.token
    assert new.token != old.token
    assert again.token == new.token
    assert len(emulator.requests) == 2


def test_the_caller_that_finds_the_token_due_is_not_held_by_its_refresh_and_close_ends_it(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock)
    old = credential.get_token_info(SCOPE)
    emulator.script(Fault(200, delay=120))  # the refresh's answer would take two minutes

    clock.now = old.refresh_on + 1
    during = credential.get_token(SCOPE)
    in_flight = credential.refreshing()
    if face.is_async:
        face._run(_until_async(lambda: len(emulator.requests) == 2))
    else:
        _until(lambda: len(emulator.requests) == 2)  # the refresh waits for its answer
    credential.close()

    assert during.token == old.token
    assert in_flight == 1  # it returned while its refresh was in flight
    credential.settle()
    assert credential.refreshing() == 0
    assert not [thread for thread in threading.enumerate() if thread.name == "msi-credential-refresh"]
    assert not credential.inner._bucket.flights and not credential.inner._bucket.async_flights
    assert credential.get_token(SCOPE).token == old.token  # usable after close(): a new refresh starts
    credential.settle()
    assert credential.get_token(SCOPE).token != old.token
    assert len(emulator.requests) == 3


def test_close_called_from_inside_a_refresh_beside_the_callers_closes_and_ends_that_refresh(
    face: Any, emulator_factory: Any
) -> None:
    """A policy (or hook) that closes its credential while a refresh runs beside the callers runs in that refresh:
    close() must not wait for the very thread or task it is called from. It returns, the refresh it was called
    from ends, and the credential stays usable."""
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    armed = [False]
    outcome: list[object] = []
    holder: list[Any] = []

    def closing() -> bool:
        if not armed[0]:
            return False
        armed[0] = False
        return True

    if face.is_async:

        class AsyncCloser(AsyncHTTPPolicy):  # type: ignore[type-arg]
            async def send(self, request: Any) -> Any:
                if closing():
                    try:
                        await holder[0].inner.close()
                        outcome.append("returned")
                    except BaseException as error:
                        outcome.append(error)
                        raise
                return await self.next.send(request)

        policy: Any = AsyncCloser()
    else:

        class Closer(HTTPPolicy):  # type: ignore[type-arg]
            def send(self, request: Any) -> Any:
                if closing():
                    try:
                        holder[0].inner.close()
                        outcome.append("returned")
                    except BaseException as error:
                        outcome.append(error)
                        raise
                return self.next.send(request)

        policy = Closer()
    credential = face.credential(emulator, _clock=clock, per_call_policies=[policy])
    holder.append(credential)
    old = credential.get_token_info(SCOPE)

    clock.now = old.refresh_on + 1
    armed[0] = True
    assert credential.get_token(SCOPE).token == old.token  # its refresh, beside it, closes the credential
    credential.settle()

    assert outcome == ["returned"]
    assert credential.refreshing() == 0
    assert not credential.inner._bucket.flights
    assert all(task.done() for task in credential.inner._bucket.async_flights.values())
    # the closing refresh stored nothing; a new one starts
    assert credential.get_token(SCOPE).token == old.token
    credential.settle()
    assert credential.get_token(SCOPE).token != old.token


def test_a_refresh_thread_that_cannot_start_costs_the_caller_nothing(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The cached token may still be served: when the thread for its refresh cannot start (the process's thread
    limit), the caller still gets it at once, nothing stays in flight, and a later call starts the refresh."""
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = ManagedIdentityCredential(
        _environ=emulator.environ, _clock=clock, _random=lambda: 0.0, share_cache=False
    )
    old = credential.get_token_info(SCOPE)
    assert old.refresh_on is not None
    start = threading.Thread.start

    def no_thread(thread: threading.Thread) -> None:
        if thread.name == "msi-credential-refresh":
            raise RuntimeError("can't start new thread")
        start(thread)

    clock.now = old.refresh_on + 1
    monkeypatch.setattr(threading.Thread, "start", no_thread)
    with caplog.at_level("WARNING", logger="msi_credential"):
        during = credential.get_token(SCOPE)
    monkeypatch.setattr(threading.Thread, "start", start)

    assert during.token == old.token
    assert not credential._bucket.flights and not credential._driver._jobs
    assert "RuntimeError" in caplog.text and old.token not in caplog.text
    assert credential.get_token(SCOPE).token == old.token  # this call's refresh starts
    assert credential._driver.settle(30)
    assert credential.get_token(SCOPE).token != old.token
    assert len(emulator.requests) == 2


def test_callers_in_the_advisory_window_start_one_refresh_per_token(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    emulator.delay = 0.05
    clock = Clock()
    credential = face.credential(emulator, _clock=clock, share_cache=True)
    other = face.credential(emulator, _clock=clock, share_cache=True)  # shares the bucket
    old = credential.get_token_info(SCOPE)
    clock.now = old.refresh_on + 1

    if face.is_async:

        async def many() -> list[Any]:
            calls = [c.inner.get_token(SCOPE) for c in (credential, other) for _ in range(8)]
            return list(await asyncio.gather(*calls))

        tokens = face._run(many())
    else:
        barrier = threading.Barrier(16)
        tokens = []

        def work(c: Any) -> None:
            barrier.wait()
            tokens.append(c.get_token(SCOPE))

        threads = [threading.Thread(target=work, args=(c,)) for c in (credential, other) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    credential.settle()
    other.settle()

    assert len(tokens) == 16 and {token.token for token in tokens} == {old.token}
    assert len(emulator.requests) == 2  # the first token and one refresh
    assert credential.get_token(SCOPE).token != old.token


def test_advisory_refresh_failure_serves_the_cached_token_and_backs_off_30_seconds(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock, retry_total=0)
    old = credential.get_token_info(SCOPE)
    emulator.script(Fault(500), Fault(500))

    clock.now = old.refresh_on + 1
    assert credential.get_token(SCOPE).token == old.token  # the refresh beside it fails
    credential.settle()
    assert len(emulator.requests) == 2
    clock.now += 29
    assert credential.get_token(SCOPE).token == old.token  # backing off: no request
    credential.settle()
    assert len(emulator.requests) == 2
    clock.now += 2
    assert credential.get_token(SCOPE).token == old.token  # next attempt fails too
    credential.settle()
    assert len(emulator.requests) == 3
    clock.now = old.expires_on - 61  # backing off until the last second before the mandatory window
    assert credential.get_token(SCOPE).token == old.token
    credential.settle()
    assert credential.get_token(SCOPE).token != old.token  # and then it recovers
    assert len(emulator.requests) == 4


def test_a_failed_refresh_beside_the_callers_is_logged_without_the_token(
    face: Any, emulator_factory: Any, caplog: Any
) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock, retry_total=0)
    old = credential.get_token_info(SCOPE)
    emulator.script(Fault(500))

    clock.now = old.refresh_on + 1
    with caplog.at_level("INFO", logger="msi_credential"):
        credential.get_token(SCOPE)
        credential.settle()

    assert "refreshing the token for https://storage.azure.com failed (internal_server_error)" in caplog.text
    assert old.token not in caplog.text


def test_mandatory_window_waits_and_propagates_the_error(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock, retry_total=0)
    old = credential.get_token_info(SCOPE)
    emulator.script(Fault(500))

    clock.now = old.expires_on - 59  # last minute: mandatory
    with pytest.raises(ManagedIdentityError):
        credential.get_token(SCOPE)
    fresh = credential.get_token(SCOPE)

    assert fresh.token != old.token
    assert len(emulator.requests) == 3


def test_short_lived_token_is_not_requested_on_every_call(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=120)
    clock = Clock()
    credential = face.credential(emulator, _clock=clock)

    info = credential.get_token_info(SCOPE)
    for _ in range(59):
        clock.now += 1
        credential.get_token(SCOPE)

    assert info.refresh_on is not None and info.refresh_on - (info.expires_on - 120) == 60
    assert len(emulator.requests) == 1


def test_long_lived_token_refreshes_at_half_life(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", token_lifetime=24 * 3600)
    credential = face.credential(emulator, _clock=Clock())

    info = credential.get_token_info(SCOPE)

    assert info.refresh_on == info.expires_on - 12 * 3600


def test_a_caller_in_the_mandatory_window_joins_the_refresh_in_flight_beside_the_callers(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    sent = threading.Event()
    release = threading.Event()
    hold = [False]

    def hook(request: Any) -> None:
        sent.set()
        if hold[0]:
            assert release.wait(30)  # the refresh stays in flight until the test lets it go

    credential = ManagedIdentityCredential(
        _environ=emulator.environ, _clock=clock, _random=lambda: 0.0, share_cache=False, raw_request_hook=hook
    )
    old = credential.get_token_info(SCOPE)
    sent.clear()
    hold[0] = True
    assert old.refresh_on is not None
    clock.now = old.refresh_on + 1
    during = credential.get_token(SCOPE)  # at once; the refresh is held in flight
    assert sent.wait(30)
    # the flight is the refresh thread's: this thread, calling again, joins it rather than re-entering it
    assert credential._bucket.flights["https://storage.azure.com"].leader != threading.get_ident()
    clock.now = old.expires_on - 30  # the mandatory window: this caller must wait, and joins that refresh
    late: list[Any] = []
    waiter = threading.Thread(target=lambda: late.append(credential.get_token(SCOPE)))
    waiter.start()
    waiting = waiter.is_alive()
    release.set()
    waiter.join(30)
    assert credential._driver.settle(30)

    assert during.token == old.token
    assert waiting
    assert late and late[0].token != old.token
    assert len(emulator.requests) == 2


def test_an_async_refresh_starts_while_another_threads_loop_ends_one_of_the_credentials_refreshes(
    emulator_factory: Any,
) -> None:
    """One async credential used from event loops in several threads: a refresh of another thread's loop can end
    (its done callback removes it from the credential's refreshes) while this thread looks them over to start
    one. The caller still gets its cached token and the refresh starts."""
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = AsyncCredential(
        _environ=emulator.environ, _clock=clock, _random=lambda: 0.0, share_cache=False
    )
    old = asyncio.run(credential.get_token_info(SCOPE))
    assert old.refresh_on is not None
    other_loop = asyncio.new_event_loop()
    jobs = credential._driver._jobs

    class OtherThreadsRefresh:
        """Stands for a task of another thread's loop, which ends while it is looked at."""

        def get_loop(self) -> Any:
            jobs.discard(self)  # its loop's thread: the task's done callback
            return other_loop

        def done(self) -> bool:
            return False

    jobs.add(OtherThreadsRefresh())
    clock.now = old.refresh_on + 1

    async def call() -> tuple[Any, Any]:
        during = await credential.get_token(SCOPE)
        await credential._driver.settle()
        return during, await credential.get_token(SCOPE)

    try:
        during, after = asyncio.run(call())
    finally:
        other_loop.close()

    assert during.token == old.token and after.token != old.token
    assert len(emulator.requests) == 2


def test_a_refresh_beside_an_async_caller_ends_with_its_loop_and_the_next_loop_starts_its_own(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = AsyncCredential(
        _environ=emulator.environ, _clock=clock, _random=lambda: 0.0, share_cache=False
    )
    old = asyncio.run(credential.get_token_info(SCOPE))
    assert old.refresh_on is not None
    emulator.script(Fault(200, delay=120))  # the first loop's refresh would take two minutes
    clock.now = old.refresh_on + 1

    async def call_and_leave() -> tuple[Any, Any]:
        token = await credential.get_token(SCOPE)
        await _until_async(lambda: len(emulator.requests) == 2)  # the refresh waits for its answer
        return token, credential._bucket.async_flights["https://storage.azure.com"]

    token, refresh = asyncio.run(call_and_leave())

    assert token.token == old.token
    assert refresh.cancelled()  # asyncio.run ended it with its loop
    assert all(job.done() for job in credential._driver._jobs)

    async def next_loop() -> tuple[Any, Any]:
        during = await credential.get_token(SCOPE)  # the old loop's task is not this loop's: a new refresh
        await credential._driver.settle()
        return during, await credential.get_token(SCOPE)

    during, new = asyncio.run(next_loop())
    asyncio.run(credential.close())

    assert during.token == old.token and new.token != old.token
    assert len(emulator.requests) == 3


def test_a_refresh_left_pending_by_a_loop_the_application_closes_ends_without_noise(
    emulator_factory: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``loop.run_until_complete(get_token)`` in the refresh window, then ``loop.close()``: the refresh task never
    ran to its end. It goes with its loop quietly: no "Task was destroyed but it is pending", no failed-refresh
    warning, no exception ignored at garbage collection; the next loop refreshes on its own."""
    emulator = emulator_factory("imds", token_lifetime=3600)
    clock = Clock()
    credential = AsyncCredential(
        _environ=emulator.environ, _clock=clock, _random=lambda: 0.0, share_cache=False
    )
    old = asyncio.run(credential.get_token_info(SCOPE))
    assert old.refresh_on is not None
    emulator.script(Fault(200, delay=120))  # the first loop's refresh would take two minutes
    clock.now = old.refresh_on + 1
    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)

    loop = asyncio.new_event_loop()

    async def call() -> Any:
        token = await credential.get_token(SCOPE)
        await _until_async(lambda: len(emulator.requests) == 2)  # the refresh is waiting for its answer
        return token

    with caplog.at_level(logging.DEBUG):
        token = loop.run_until_complete(call())
        loop.close()
        credential._bucket.async_flights.clear()
        credential._driver._jobs.clear()
        gc.collect()

    assert token.token == old.token
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
    assert [str(hook.exc_value) for hook in ignored] == []


# ---------------------------------------------------------------------------------------- process-wide cache


def test_credential_per_request_still_sends_one_request_per_resource(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")

    for _ in range(20):
        with ManagedIdentityCredential(_environ=emulator.environ) as credential:
            credential.get_token(SCOPE)
            credential.get_token("https://vault.azure.net/.default")

    assert len(emulator.requests) == 2


def test_a_caller_cannot_change_the_token_info_other_credentials_get(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("app_service")
    first = face.credential(emulator, share_cache=True)
    second = face.credential(emulator, share_cache=True)
    info = first.get_token_info(SCOPE)
    token = first.get_token(SCOPE)

    for name, value in [("token", "forged"), ("expires_on", 0), ("refresh_on", 0), ("token_type", "Basic")]:
        with pytest.raises(AttributeError, match="cannot be set"):
            setattr(info, name, value)
        with pytest.raises(AttributeError, match="cannot be deleted"):
            delattr(info, name)
        with pytest.raises(AttributeError):  # AccessToken is a NamedTuple: already immutable
            setattr(token, name if hasattr(token, name) else "token", value)

    again = second.get_token_info(SCOPE)
    assert isinstance(again, AccessTokenInfo)
    issued = emulator.issued_tokens()[0]
    unchanged = (
        again.token == issued and second.get_token(SCOPE).token == issued
    )  # no token in a failure's output
    assert unchanged
    assert (again.expires_on, again.token_type) == (token.expires_on, "Bearer")
    assert len(emulator.requests) == 1
    assert vars(again) == {
        "token": again.token,
        "expires_on": again.expires_on,
        "token_type": "Bearer",
        "refresh_on": again.refresh_on,
    }
    copied = copy.copy(again)
    assert vars(pickle.loads(pickle.dumps(again))) == vars(copied) == vars(again)


def test_different_identities_do_not_share_tokens(emulator_factory: Any) -> None:
    from msi_credential.emulator import UserAssignedIdentity

    identity = UserAssignedIdentity("c1c1c1c1-0000-0000-0000-000000000000", "o1o1o1o1-0000", "/r/1")
    emulator = emulator_factory("imds", identities=[identity])

    system = ManagedIdentityCredential(_environ=emulator.environ).get_token(SCOPE)
    user = ManagedIdentityCredential(
        _environ=emulator.environ, client_id=identity.client_id.upper()
    ).get_token(SCOPE)
    user_again = ManagedIdentityCredential(_environ=emulator.environ, client_id=identity.client_id).get_token(
        SCOPE
    )

    assert system.token != user.token
    assert user.token == user_again.token  # ids compare case-insensitively
    assert len(emulator.requests) == 2


def test_a_million_cached_calls_do_not_grow_memory(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    get_token = credential.get_token
    get_token(SCOPE)
    for _ in range(1000):
        get_token(SCOPE)

    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(1_000_000):
            get_token(SCOPE)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()

    growth = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    FIGURES.append(f"memory growth over 1,000,000 cached get_token calls (tracemalloc): {growth} bytes")
    assert growth < 64 * 1024  # tracemalloc's own snapshot bookkeeping; nothing per call
    assert len(emulator.requests) == 1


def test_capabilities_are_not_sent_where_the_source_does_not_take_them(
    face: Any, emulator_factory: Any
) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator, client_capabilities=["cp1"])

    credential.get_token(SCOPE)
    credential.get_token(SCOPE, claims='{"access_token":{}}')

    assert all(
        "xms_cc" not in r.query and "token_sha256_to_refresh" not in r.query for r in emulator.requests
    )
