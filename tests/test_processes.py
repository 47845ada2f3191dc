"""Forked, pickled and long-lived processes: a child forked mid-request gets its token, a pickled credential works
where it is unpickled and carries nothing secret, and the cache does not pin memory for what nobody can use."""

from __future__ import annotations

import gc
import json
import os
import pickle
import subprocess
import sys
import threading
import time
import tracemalloc
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential
from msi_credential._engine import cache
from msi_credential.emulator import Fault, UserAssignedIdentity

from .conftest import FIGURES

SCOPE = "https://storage.azure.com/.default"


def _wait_for(condition: Any, what: str, limit: float = 10.0) -> None:
    """Wait on an event-like condition (polled through an Event's wait, never a bare sleep)."""
    tick = threading.Event()
    waited = 0.0
    while not condition():
        if waited >= limit:
            pytest.fail(f"timed out waiting for {what}")
        tick.wait(0.01)
        waited += 0.01


# ------------------------------------------------------------------------------------------------ fork()


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
    _wait_for(lambda: len(emulator.requests) == 1, "the parent's request to reach the emulator")

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            child = credential if which == "same-credential" else ManagedIdentityCredential(_environ=environ)
            token = child.get_token(SCOPE)
            os.write(
                write_end, json.dumps({"expires_on": token.expires_on, "ok": bool(token.token)}).encode()
            )
            code = 0
        except BaseException as error:
            os.write(write_end, json.dumps({"error": type(error).__name__}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    result = _child_result(read_end, pid)
    requester.join(10)

    assert result["ok"] is True
    assert parent_result and parent_result[0].token
    assert len(emulator.requests) == 2  # the parent's and the child's own


class _Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() with threads, the case under test
def test_a_child_forked_during_a_refresh_beside_the_callers_has_none_running_and_starts_its_own(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("app_service")
    clock = _Clock()
    credential = ManagedIdentityCredential(_environ=dict(emulator.environ), _clock=clock, _random=lambda: 0.0)
    old = credential.get_token_info(SCOPE)
    assert old.refresh_on is not None
    emulator.script(Fault(200, delay=120))  # the parent's refresh stays in flight
    clock.now = old.refresh_on + 1
    assert credential.get_token(SCOPE).token == old.token
    _wait_for(lambda: len(emulator.requests) == 2, "the parent's refresh to reach the emulator")

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            threads = [thread.name for thread in threading.enumerate()]
            flights = len(credential._bucket.flights)
            served = credential.get_token(SCOPE).token == old.token  # at once, and a refresh of its own
            settled = credential._driver.settle(30)
            refreshed = credential.get_token(SCOPE).token != old.token
            credential.close()
            report = {"threads": threads, "flights": flights, "served": served, "settled": settled}
            report["refreshed"] = refreshed
            os.write(write_end, json.dumps(report).encode())
            code = 0
        except BaseException as error:
            os.write(write_end, json.dumps({"error": type(error).__name__}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    result = _child_result(read_end, pid)
    pickled = pickle.dumps(credential)  # mid-refresh: still only its arguments
    credential.close()

    assert "msi-credential-refresh" not in result["threads"]
    assert result["flights"] == 0
    assert result["served"] and result["settled"] and result["refreshed"]
    assert len(emulator.requests) == 3  # the parent's refresh and the child's own
    assert b"Thread" not in pickled and b"Lock" not in pickled
    assert credential._driver.settle(30)


# ------------------------------------------------------------------------------------------------ pickle


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


def test_a_credential_with_a_transport_refuses_to_be_pickled(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    emulator = emulator_factory("app_service")
    credential = ManagedIdentityCredential(_environ=emulator.environ, transport=RequestsTransport())

    with pytest.raises(TypeError, match="transport"):
        pickle.dumps(credential)


# ------------------------------------------------------------------------------------------------ growth


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


def test_expired_entries_of_many_resources_do_not_pin_memory(emulator_factory: Any) -> None:
    clock = Clock()
    emulator = emulator_factory("app_service", token_lifetime=600, clock=clock)
    credential = ManagedIdentityCredential(_environ=emulator.environ, _clock=clock)
    resources = 600
    credential.get_token("https://warm-up.example/.default")
    gc.collect()

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for index in range(resources):
            credential.get_token(f"https://resource-{index}.example/.default")
        emulator.clear()  # the emulator's records of what it issued are not the cache's
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
        clock.now += 600 + cache.SHARED_SWEEP_INTERVAL  # every token has expired
        credential.get_token("https://one-more.example/.default")  # a store: the sweep runs
        emulator.clear()
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    FIGURES.append(
        f"{resources} resources: cache grew {grown / 2**20:.2f} MiB while valid, "
        f"{kept / 2**20:.2f} MiB kept after they expired"
    )
    assert len(credential._bucket) == 2  # the last resource, by resource and by scope
    assert kept < grown / 4  # what stays is fixed (pools, buffers), not per resource


def test_buckets_no_credential_uses_go_once_their_tokens_expire(emulator_factory: Any) -> None:
    count = 200
    identities = [
        UserAssignedIdentity(f"client-{index}", f"object-{index}", f"/id/{index}") for index in range(count)
    ]
    clock = Clock()
    emulator = emulator_factory("app_service", identities=identities, token_lifetime=600, clock=clock)
    baseline = cache.shared_bucket_count()

    for index in range(count):
        ManagedIdentityCredential(
            _environ=emulator.environ, _clock=clock, client_id=f"client-{index}"
        ).get_token(SCOPE)
    gc.collect()
    while_valid = cache.shared_bucket_count() - baseline
    # a credential built per request still finds the token its predecessor got
    again = ManagedIdentityCredential(_environ=emulator.environ, _clock=clock, client_id="client-7")
    again.get_token(SCOPE)
    assert len(emulator.requests) == count
    del again

    clock.now += 600 + cache.SHARED_SWEEP_INTERVAL
    ManagedIdentityCredential(_environ=emulator.environ, _clock=clock).get_token(SCOPE)  # a store: the sweep
    gc.collect()
    after = cache.shared_bucket_count() - baseline

    FIGURES.append(
        f"{count} client ids: {while_valid} buckets while their tokens were valid, {after} after expiry"
    )
    assert while_valid == count
    assert after <= 1  # only the system-assigned one just used
