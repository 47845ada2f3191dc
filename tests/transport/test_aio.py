"""The async driver (msi_credential/_transport/aio.py): single flight across tasks, cancellation, event loops
that come and go (refreshes beside the callers end with their loop), file reads off the event loop thread, a
caller's aiohttp transport that trusts environment proxies, and an interpreter at exit. The async credential
against the emulator or a loopback server; the driver's ``single_flight`` is also called directly, with a failing
request."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import os
import subprocess
import sys
import threading
from typing import Any

import pytest
from azure.core.credentials import AccessTokenInfo
from azure.core.pipeline.transport import AioHttpTransport

from msi_credential import ManagedIdentityError
from msi_credential._engine import cache
from msi_credential._transport import aio
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential
from msi_credential.emulator import Fault

from .support import (
    SCOPE,
    arc_challenge_server,
    arc_environ,
    proxy_everything,
    until_async,
    with_a_cached_token,
)

RESOURCE = "https://storage.azure.com"

# ------------------------------------------------------------------- single flight across tasks, cancellation


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


# ``single_flight`` called directly: a failed leader's error reaches every waiting task, which sends nothing.
async def test_tasks_waiting_on_a_failed_flight_receive_its_error_and_send_nothing() -> None:
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

    calls = [
        asyncio.ensure_future(aio.single_flight(bucket, RESOURCE, request, lambda: None)) for _ in range(16)
    ]
    await asyncio.sleep(0)  # every task joins the flight
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert [getattr(o, "error_code", o) for o in outcomes] == ["forbidden"] * 16
    assert requests == 1


# ------------------------------------------------------------------------------------------------ event loops


def test_async_credential_works_across_event_loops(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = AsyncCredential(_environ=emulator.environ, share_cache=False)

    first = asyncio.run(credential.get_token(SCOPE))
    second = asyncio.run(credential.get_token("https://vault.azure.net/.default"))
    third = asyncio.run(credential.get_token(SCOPE, claims='{"access_token":{}}'))
    asyncio.run(credential.close())

    assert first.token and second.token and third.token
    assert len(emulator.requests) == 3


def test_an_async_refresh_starts_while_another_threads_loop_ends_one_of_the_credentials_refreshes(
    emulator_factory: Any,
) -> None:
    """One async credential used from event loops in several threads: a refresh of another thread's loop can end
    (its done callback removes it from the credential's refreshes) while this thread looks them over to start
    one. The caller still gets its cached token and the refresh starts."""
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, AsyncCredential)
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
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, AsyncCredential)
    emulator.script(Fault(200, delay=120))  # the first loop's refresh would take two minutes
    clock.now = old.refresh_on + 1

    async def call_and_leave() -> tuple[Any, Any]:
        token = await credential.get_token(SCOPE)
        await until_async(lambda: len(emulator.requests) == 2)  # the refresh waits for its answer
        return token, credential._bucket.async_flights[RESOURCE]

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
    emulator, clock, credential, old = with_a_cached_token(emulator_factory, AsyncCredential)
    emulator.script(Fault(200, delay=120))  # the first loop's refresh would take two minutes
    clock.now = old.refresh_on + 1
    ignored: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)

    loop = asyncio.new_event_loop()

    async def call() -> Any:
        token = await credential.get_token(SCOPE)
        await until_async(lambda: len(emulator.requests) == 2)  # the refresh is waiting for its answer
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


# --------------------------------------------------------------------------- files, proxies, interpreter exit


async def test_the_async_face_reads_the_key_file_outside_the_event_loop_thread(
    capturing_server: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    key_file = tmp_path / "agent.key"
    key_file.write_text("k" * 32)
    readers: list[int] = []
    real_read = aio.read_file

    def recording_read(effect: Any) -> Any:
        readers.append(threading.get_ident())
        return real_read(effect)

    monkeypatch.setattr(aio, "read_file", recording_read)
    server = arc_challenge_server(capturing_server, str(key_file))
    async with AsyncCredential(
        _environ=arc_environ(server.port), _arc_key_directory=str(tmp_path), share_cache=False
    ) as credential:
        with pytest.raises(ManagedIdentityError):
            await credential.get_token(SCOPE)  # the server refuses the key: arc_challenge_rejected

    assert readers
    assert threading.get_ident() not in readers


async def test_supplied_aiohttp_transport_that_trusts_env_proxies_is_not_used_for_secrets(
    emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    emulator = emulator_factory("app_service")
    proxy_everything(monkeypatch, unused_port)
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=AioHttpTransport()
    ) as credential:
        token = await credential.get_token(SCOPE)

    assert token.token
    assert len(emulator.requests) == 1


_AT_EXIT = """
import asyncio, atexit, json, sys
from msi_credential.aio import ManagedIdentityCredential

def at_exit():
    async def main():
        async with ManagedIdentityCredential(**json.loads(sys.argv[1])) as credential:
            return await credential.get_token("https://storage.azure.com/.default")
    try:
        print("token", bool(asyncio.run(main()).token))
    except Exception as error:
        print("error", type(error).__name__, error)

atexit.register(at_exit)
"""


@pytest.mark.parametrize("which", ["workload_identity", "azure_arc", "app_service with the machine cache"])
def test_the_async_face_gets_a_token_in_an_atexit_handler(
    emulator_factory: Any, tmp_path: Any, which: str
) -> None:
    """File reads (federated token, Arc key), the machine cache and aiohttp's own helpers use the loop's executor,
    which the exiting interpreter refuses to start: the async face must still get its token there, as the sync
    face does."""
    source, _, extra = which.partition(" ")
    emulator = emulator_factory(source)
    kwargs = dict(emulator.credential_kwargs)
    environment = {
        name: value
        for name, value in os.environ.items()
        if "proxy" not in name.lower()
        and name != "PYTHONPATH"
        and not name.startswith(("AZURE_", "IDENTITY_"))
    }
    environment.update(emulator.environ, NO_PROXY="*", PYTHONPATH=os.getcwd())
    if extra:
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700)
        environment.update(XDG_RUNTIME_DIR=str(runtime))
        kwargs["machine_cache"] = True

    finished = subprocess.run(
        [sys.executable, "-c", _AT_EXIT, json.dumps(kwargs)],
        capture_output=True,
        env=environment,
        timeout=60,
        check=False,
    )

    assert finished.returncode == 0, finished.stderr.decode()
    assert finished.stdout.decode().split() == ["token", "True"], finished.stdout.decode()
    if extra:
        assert len(list((tmp_path / "runtime" / "msi-credential").iterdir())) == 1  # stored for the others


async def test_a_given_transport_refused_by_the_exiting_interpreter_is_a_typed_error(
    emulator_factory: Any,
) -> None:
    """In an atexit handler a caller's async transport that needs the loop's executor cannot send; our own
    transports then send as the sync face does (test_the_async_face_gets_a_token_in_an_atexit_handler above), a
    caller's is a ManagedIdentityError."""

    class Exiting(AioHttpTransport):
        async def send(self, request: Any, **kwargs: Any) -> Any:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    emulator = emulator_factory("app_service")
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=Exiting()
    ) as credential:
        with pytest.raises(ManagedIdentityError) as caught:
            await credential.get_token(SCOPE)

    assert caught.value.error_code == "interpreter_exiting"
    assert "atexit" in str(caught.value)
