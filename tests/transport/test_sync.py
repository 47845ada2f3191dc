"""The sync driver (msi_credential/_transport/sync.py): single flight across threads, signal handlers that
land while a thread holds its locks, refreshes beside the callers in threads, and fork() while a request or a
refresh is in flight. The sync credential against the emulator; the driver's ``single_flight`` is also called
directly, with a failing request."""

from __future__ import annotations

import json
import os
import pickle
import signal
import threading
from typing import Any, Callable, Optional

import pytest
from azure.core.credentials import AccessTokenInfo

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential._engine import cache
from msi_credential._transport.sync import single_flight
from msi_credential.emulator import Fault

from .support import SCOPE, Clock, wait_for, with_a_cached_token

RESOURCE = "https://storage.azure.com"

# ------------------------------------------------------------------------------- single flight across threads


def _started_and_joined(
    work: Callable[[], None], count: int, timeout: Optional[float] = None
) -> list[threading.Thread]:
    """``count`` threads running ``work``, started, then joined (each for up to ``timeout`` seconds)."""
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return threads


def test_64_threads_on_a_cold_cache_send_one_request(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.delay = 0.05
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    barrier = threading.Barrier(64)
    tokens: list[str] = []

    def work() -> None:
        barrier.wait()
        tokens.append(credential.get_token(SCOPE).token)

    _started_and_joined(work, 64)

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

    _started_and_joined(work, 16)

    assert len(set(tokens)) == 1
    assert len(emulator.requests) == 1


def test_a_failed_flight_leaves_no_thread_waiting_and_only_late_threads_request_again(
    emulator_factory: Any,
) -> None:
    """Threads that joined the flight get its error; a thread arriving after it ended sends its own request.
    That waiters get the leader's error without a request of their own is checked deterministically in
    test_threads_waiting_on_a_failed_flight_receive_its_error_and_send_nothing below (the threads here race the
    0.1 s answer)."""
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

    threads = _started_and_joined(work, 16, timeout=30)

    assert not any(thread.is_alive() for thread in threads)
    assert len(outcomes) == 16
    tokens = [o for o in outcomes if hasattr(o, "token")]
    assert outcomes.count("forbidden") + len(tokens) == 16 and outcomes.count("forbidden") >= 1
    assert len(emulator.requests) == 1 + (1 if tokens else 0)  # late threads share one new flight


# ``single_flight`` called directly: a failed leader's error reaches every waiting thread, which sends nothing.


def _failing_leader(bucket: cache.Bucket, waiters: int) -> tuple[list[object], int]:
    """``waiters + 1`` threads miss the cache together; the leader's request fails once every waiter waits."""
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


# -------------------------------------------------------------------------------------------- signal handlers


def _with_sigusr1(handler: Callable[[int, Any], None], call: Callable[[], str], hang: str) -> str:
    """``call()`` with ``handler`` as the SIGUSR1 handler, the handlers before restored after. A watchdog SIGALRM
    bounds it: if it would hang, ``TimeoutError(hang)`` ends it after 20 s."""

    def watchdog(signum: int, frame: Any) -> None:
        raise TimeoutError(hang)

    previous = signal.signal(signal.SIGUSR1, handler), signal.signal(signal.SIGALRM, watchdog)
    signal.setitimer(signal.ITIMER_REAL, 20.0)
    try:
        return call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGUSR1, previous[0])
        signal.signal(signal.SIGALRM, previous[1])


def _get_token_while_a_handler_gets_one(
    credential: ManagedIdentityCredential, hang: str
) -> tuple[str, list[str]]:
    """get_token, during which the test raises SIGUSR1, whose handler calls get_token for the same token: the
    outer call's token, and the tokens the handler got (``hang``: the watchdog's words, see _with_sigusr1)."""
    handler_got: list[str] = []

    def on_usr1(signum: int, frame: Any) -> None:
        handler_got.append(credential.get_token(SCOPE).token)

    return _with_sigusr1(on_usr1, lambda: credential.get_token(SCOPE).token, hang=hang), handler_got


def test_get_token_from_a_signal_handler_in_the_thread_leading_the_request_gets_a_token(
    emulator_factory: Any,
) -> None:
    """A handler (SIGALRM, SIGTERM cleanup) that asks for the same token while its thread is requesting it must
    not wait on the flight its own thread leads: it makes a request of its own. A watchdog SIGALRM bounds the
    test if it would hang."""
    emulator = emulator_factory("app_service")
    fired = [False]

    def hook(request: Any) -> None:  # runs in the main thread, while its flight is registered
        if not fired[0]:
            fired[0] = True
            os.kill(os.getpid(), signal.SIGUSR1)

    credential = ManagedIdentityCredential(
        _environ=emulator.environ, share_cache=False, raw_request_hook=hook
    )

    outer, handler_got = _get_token_while_a_handler_gets_one(
        credential, hang="get_token in the signal handler waited on its own thread's flight"
    )

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
    fired = [False]

    class InterruptedFlight(sync._Flight):
        def __init__(self) -> None:
            if not fired[0]:
                fired[0] = True
                os.kill(os.getpid(), signal.SIGUSR1)  # its handler runs here, under the bucket's lock
            super().__init__()

    monkeypatch.setattr(sync, "_Flight", InterruptedFlight)

    outer, handler_got = _get_token_while_a_handler_gets_one(
        credential, hang="get_token in the signal handler waited for the lock its own thread holds"
    )

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

    token = _with_sigusr1(
        on_usr1,
        lambda: credential.get_token(SCOPE).token,
        hang="close() in the signal handler waited for the lock its own thread holds",
    )

    assert fired[0] and closed == [True] and token


# -------------------------------------------------------------------------------------------- refresh threads


def test_a_refresh_thread_that_cannot_start_costs_the_caller_nothing(
    emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The cached token may still be served: when the thread for its refresh cannot start (the process's thread
    limit), the caller still gets it at once, nothing stays in flight, and a later call starts the refresh."""
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, ManagedIdentityCredential)
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


def test_a_caller_in_the_mandatory_window_joins_the_refresh_in_flight_beside_the_callers(
    emulator_factory: Any,
) -> None:
    sent = threading.Event()
    release = threading.Event()
    hold = [False]

    def hook(request: Any) -> None:
        sent.set()
        if hold[0]:
            assert release.wait(30)  # the refresh stays in flight until the test lets it go

    emulator, clock, credential, old = with_a_cached_token(
        emulator_factory, ManagedIdentityCredential, raw_request_hook=hook
    )
    sent.clear()
    hold[0] = True
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


# ----------------------------------------------------------------------------------------------------- fork()


def _child_result(read_end: int, pid: int, limit: float = 30.0) -> dict[str, Any]:
    tick = threading.Event()
    waited = 0.0
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if waited >= limit:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung on the token request its parent had in flight")
        tick.wait(0.05)
        waited += 0.05
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    assert os.waitstatus_to_exitcode(status) == 0, data
    result: dict[str, Any] = json.loads(data)
    return result


def _forked(in_the_child: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Fork: the child runs ``in_the_child()`` and writes what it returns (or the name of what it raised) to a pipe
    as JSON, and exits without returning into pytest; the parent reads it."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.write(write_end, json.dumps(in_the_child()).encode())
            code = 0
        except BaseException as error:
            os.write(write_end, json.dumps({"error": type(error).__name__}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    return _child_result(read_end, pid)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads, the case under test
@pytest.mark.parametrize("which", ["same-credential", "new-credential-sharing-the-cache"])
def test_a_child_forked_during_a_token_request_gets_its_own_token(emulator_factory: Any, which: str) -> None:
    emulator = emulator_factory("app_service")
    emulator.delay = 1.0  # the parent's request is in flight when it forks
    environ = dict(emulator.environ)
    credential = ManagedIdentityCredential(_environ=environ)
    parent_result: list[Any] = []
    requester = threading.Thread(target=lambda: parent_result.append(credential.get_token(SCOPE)))
    requester.start()
    wait_for(lambda: len(emulator.requests) == 1, "the parent's request to reach the emulator")

    def in_the_child() -> dict[str, Any]:
        child = credential if which == "same-credential" else ManagedIdentityCredential(_environ=environ)
        token = child.get_token(SCOPE)
        return {"expires_on": token.expires_on, "ok": bool(token.token)}

    result = _forked(in_the_child)
    requester.join(10)

    assert result["ok"] is True
    assert parent_result and parent_result[0].token
    assert len(emulator.requests) == 2  # the parent's and the child's own


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads, the case under test
def test_a_child_forked_during_a_refresh_beside_the_callers_has_none_running_and_starts_its_own(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("app_service")
    clock = Clock()
    credential = ManagedIdentityCredential(_environ=dict(emulator.environ), _clock=clock, _random=lambda: 0.0)
    old = credential.get_token_info(SCOPE)
    assert old.refresh_on is not None
    emulator.script(Fault(200, delay=120))  # the parent's refresh stays in flight
    clock.now = old.refresh_on + 1
    assert credential.get_token(SCOPE).token == old.token
    wait_for(lambda: len(emulator.requests) == 2, "the parent's refresh to reach the emulator")

    def in_the_child() -> dict[str, Any]:
        threads = [thread.name for thread in threading.enumerate()]
        flights = len(credential._bucket.flights)
        served = credential.get_token(SCOPE).token == old.token  # at once, and a refresh of its own
        settled = credential._driver.settle(30)
        refreshed = credential.get_token(SCOPE).token != old.token
        credential.close()
        report = {"threads": threads, "flights": flights, "served": served, "settled": settled}
        report["refreshed"] = refreshed
        return report

    result = _forked(in_the_child)
    pickled = pickle.dumps(credential)  # mid-refresh: still only its arguments
    credential.close()

    assert "msi-credential-refresh" not in result["threads"]
    assert result["flights"] == 0
    assert result["served"] and result["settled"] and result["refreshed"]
    assert len(emulator.requests) == 3  # the parent's refresh and the child's own
    assert b"Thread" not in pickled and b"Lock" not in pickled
    assert credential._driver.settle(30)
