"""machine_cache=True: tokens shared by one user's processes on this machine, with real processes."""

from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential
from msi_credential.emulator import Fault, UserAssignedIdentity

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="the machine cache is POSIX-only")

WORKER = str(Path(__file__).with_name("machine_cache_worker.py"))
STORAGE = "https://storage.azure.com"
VAULT = "https://vault.azure.net"
BOUND = 60.0  # seconds any child may take in all: a hang fails the test instead of stalling it


def _runtime_dir(tmp_path: Path) -> Path:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return runtime


def _child_env(emulator: Any, runtime: Path, **extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "XDG_RUNTIME_DIR": str(runtime),
        "MSI_CREDENTIAL_MACHINE_CACHE": "1",
        "NO_PROXY": "*",
        "no_proxy": "*",
        "PYTHONPATH": os.pathsep.join(sys.path),
    }
    env.update(emulator.environ)
    env.update(extra)
    return env


def _start(env: dict[str, str], resources: list[str], count: int) -> list[subprocess.Popen[str]]:
    children = [
        subprocess.Popen(
            [sys.executable, WORKER, "msi", *resources],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"  # imported and built: all start together
    return children


def _go(children: list[subprocess.Popen[str]]) -> None:
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()


def _results(children: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    results = []
    for child in children:
        try:
            out, _ = child.communicate(timeout=BOUND)
        except subprocess.TimeoutExpired:
            for other in children:
                other.kill()
            pytest.fail("a process waited past the bound for another one's token request")
        assert child.returncode == 0
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def _token_requests(emulator: Any) -> list[Any]:
    return [r for r in emulator.requests if r.path.startswith("/msi/token")]


def test_32_processes_started_together_make_one_request_per_resource(
    emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = emulator_factory("app_service")
    children = _start(_child_env(emulator, _runtime_dir(tmp_path)), [STORAGE, VAULT], 32)
    _go(children)
    results = _results(children)
    assert len(_token_requests(emulator)) == 2
    assert len({tuple(r["tokens"]) for r in results}) == 1


def test_without_the_option_each_process_asks(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    env = _child_env(emulator, _runtime_dir(tmp_path), MSI_CREDENTIAL_MACHINE_CACHE="0")
    children = _start(env, [STORAGE], 3)
    _go(children)
    _results(children)
    assert len(_token_requests(emulator)) == 3


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_holder_killed_mid_request_does_not_block_the_others(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, delay=BOUND * 2))  # the holder's request hangs until it is killed
    env = _child_env(emulator, _runtime_dir(tmp_path))
    holder = _start(env, [STORAGE], 1)[0]
    others = _start(env, [STORAGE], 4)
    _go([holder])
    assert holder.stdout is not None
    from tests.test_processes import _wait_for

    _wait_for(lambda: len(_token_requests(emulator)) == 1, "the holder's request to reach the emulator")
    _go(others)  # they find the holder's lock and wait on it
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=BOUND)
    results = _results(others)
    assert len({tuple(r["tokens"]) for r in results}) == 1
    assert len(_token_requests(emulator)) == 2  # the dead holder's, and one for the four others


def test_a_holder_that_hangs_is_waited_for_only_up_to_the_bound(
    emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, delay=BOUND * 2))
    env = _child_env(emulator, _runtime_dir(tmp_path))
    holder = _start(env, [STORAGE], 1)[0]
    from tests.test_processes import _wait_for

    try:
        _go([holder])
        _wait_for(lambda: len(_token_requests(emulator)) == 1, "the holder's request to reach the emulator")
        credential = ManagedIdentityCredential(
            _environ=env, machine_cache=True, _machine_cache_wait=0.2, share_cache=False
        )
        assert credential.get_token(STORAGE + "/.default").token
        assert len(_token_requests(emulator)) == 2  # it stopped waiting and asked itself
    finally:
        holder.kill()
        holder.wait(timeout=BOUND)


def _credential(emulator: Any, runtime: Path, **kwargs: Any) -> ManagedIdentityCredential:
    env = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    return ManagedIdentityCredential(_environ=env, machine_cache=True, share_cache=False, **kwargs)


def test_a_second_credential_reads_the_first_ones_token_from_the_machine_cache(
    emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    first = _credential(emulator, runtime).get_token(STORAGE).token
    second = _credential(emulator, runtime).get_token(STORAGE).token
    assert first == second
    assert len(_token_requests(emulator)) == 1
    entries = [p for p in (runtime / "msi-credential").iterdir() if not p.name.endswith(".lock")]
    assert len(entries) == 1
    assert (entries[0].stat().st_mode & 0o777) == 0o600
    assert ((runtime / "msi-credential").stat().st_mode & 0o777) == 0o700
    assert STORAGE not in entries[0].name and "storage" not in entries[0].name


def test_two_identities_never_see_each_others_tokens(emulator_factory: Any, tmp_path: Path) -> None:
    a = UserAssignedIdentity(
        client_id="11111111-1111-1111-1111-111111111111", object_id="a", resource_id="/identities/a"
    )
    b = UserAssignedIdentity(
        client_id="22222222-2222-2222-2222-222222222222", object_id="b", resource_id="/identities/b"
    )
    emulator = emulator_factory("app_service", identities=[a, b])
    runtime = _runtime_dir(tmp_path)
    system = _credential(emulator, runtime).get_token(STORAGE).token
    first = _credential(emulator, runtime, client_id=a.client_id).get_token(STORAGE).token
    second = _credential(emulator, runtime, client_id=b.client_id).get_token(STORAGE).token
    assert len({system, first, second}) == 3
    assert len(_token_requests(emulator)) == 3
    again = _credential(emulator, runtime, client_id=a.client_id).get_token(STORAGE).token
    assert again == first


def test_a_corrupt_or_foreign_entry_is_ignored_and_replaced(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    _credential(emulator, runtime).get_token(STORAGE)
    directory = runtime / "msi-credential"
    entry = next(p for p in directory.iterdir() if not p.name.endswith(".lock"))
    for damage in (b'{"v": 1, "name": "', b"\x00garbage", b'{"v": 1, "name": "someone-else"}'):
        entry.write_bytes(damage)
        token = _credential(emulator, runtime).get_token(STORAGE).token
        assert json.loads(entry.read_text())["token"] == token  # replaced by the new request's token
    assert len(_token_requests(emulator)) == 4


def test_an_expired_entry_is_never_served(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    _credential(emulator, runtime).get_token(STORAGE)
    entry = next(p for p in (runtime / "msi-credential").iterdir() if not p.name.endswith(".lock"))
    body = json.loads(entry.read_text())
    body.update(expires_on=1, refresh_on=0, mandatory_at=0)
    entry.write_text(json.dumps(body))
    _credential(emulator, runtime).get_token(STORAGE)
    assert len(_token_requests(emulator)) == 2


def test_refused_resources_leave_no_lock_file_behind(emulator_factory: Any, tmp_path: Path) -> None:
    """Every resource asked takes a lock file while its request is in flight; its holder removes it when done,
    refused resources included, so the directory holds only the entries (40 refusals: 0 files, not 40)."""
    emulator = emulator_factory("app_service")
    emulator.script(*[Fault(400, {"error": "invalid_resource", "error_description": "no"})] * 40)
    runtime = _runtime_dir(tmp_path)
    credential = _credential(emulator, runtime)
    for number in range(40):
        with pytest.raises(ManagedIdentityError):
            credential.get_token(f"https://refused-{number}.example")
    credential.get_token(STORAGE)

    [entry] = list((runtime / "msi-credential").iterdir())  # the one token; no lock file
    assert not entry.name.endswith(".lock")


def test_expired_entries_are_swept_when_a_token_is_stored(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    _credential(emulator, runtime).get_token(STORAGE)
    [entry] = list((runtime / "msi-credential").iterdir())
    body = json.loads(entry.read_text())
    body.update(expires_on=1, refresh_on=0, mandatory_at=0)
    entry.write_text(json.dumps(body))

    _credential(emulator, runtime).get_token(VAULT)

    names = [p.name for p in (runtime / "msi-credential").iterdir()]
    assert len(names) == 1 and entry.name not in names  # the vault token only: the expired one is gone


async def test_a_cancelled_async_call_leaves_no_machine_cache_lock_behind(
    emulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its executor thread waits for another process's lock (``asyncio.run`` ending after a
    ``wait_for`` timeout): once that process lets go, the thread must not take the lock and keep it until this
    process exits (every process would then wait on it)."""
    from msi_credential._transport import machine_cache

    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    real_lookup = machine_cache.lookup
    waiting, finished = threading.Event(), threading.Event()
    other: list[int] = []

    def lookup_behind_another_process(effect: Any, held: list[int]) -> Any:
        path = os.path.join(effect.directory, effect.name + ".lock")
        os.makedirs(effect.directory, mode=0o700, exist_ok=True)
        other.append(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        fcntl.flock(other[0], fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another process" holds it
        waiting.set()
        try:
            return real_lookup(effect, held)
        finally:
            finished.set()

    monkeypatch.setattr(machine_cache, "lookup", lookup_behind_another_process)
    env = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    credential = AsyncCredential(_environ=env, machine_cache=True, share_cache=False, _machine_cache_wait=30)
    loop = asyncio.get_running_loop()
    call = asyncio.ensure_future(credential.get_token(STORAGE))
    assert await loop.run_in_executor(None, waiting.wait, 30)
    # cancelled as asyncio.run cancels what is left when its main coroutine ends: the call and its request
    [flight] = credential._bucket.async_flights.values()
    for task in (call, flight):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    os.close(other[0])  # the other process is done; the abandoned thread must not take its place
    assert await loop.run_in_executor(None, finished.wait, 30)
    await credential.close()

    lock_files = [p for p in (runtime / "msi-credential").iterdir() if p.name.endswith(".lock")]
    for lock_file in lock_files:
        probe = os.open(lock_file, os.O_RDWR)
        try:
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: the lock leaked
        finally:
            os.close(probe)
    assert machine_cache._held == set()


def test_a_directory_open_to_others_is_refused(
    emulator_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    (runtime / "msi-credential").mkdir(mode=0o700)
    os.chmod(runtime / "msi-credential", 0o755)
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        _credential(emulator, runtime).get_token(STORAGE)
        _credential(emulator, runtime).get_token(STORAGE)
    assert len(_token_requests(emulator)) == 2  # in-process only
    assert list((runtime / "msi-credential").iterdir()) == []
    assert "not owned by this user with mode 0700" in caplog.text


def test_an_xdg_runtime_dir_open_to_others_is_refused(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    os.chmod(runtime, 0o777)
    _credential(emulator, runtime).get_token(STORAGE)
    assert not (runtime / "msi-credential").exists()


def test_an_entry_readable_by_others_is_not_trusted_and_replaced(
    emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    _credential(emulator, runtime).get_token(STORAGE)
    entry = next(p for p in (runtime / "msi-credential").iterdir() if not p.name.endswith(".lock"))
    os.chmod(entry, 0o644)
    token = _credential(emulator, runtime).get_token(STORAGE).token
    assert len(_token_requests(emulator)) == 2
    assert (entry.stat().st_mode & 0o777) == 0o600
    assert json.loads(entry.read_text())["token"] == token


def test_a_link_instead_of_the_directory_is_refused(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (runtime / "msi-credential").symlink_to(elsewhere)
    _credential(emulator, runtime).get_token(STORAGE)
    assert list(elsewhere.iterdir()) == []


def test_claims_bypass_the_machine_cache_and_store_the_new_token(
    emulator_factory: Any, tmp_path: Path
) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    old = _credential(emulator, runtime).get_token(STORAGE).token
    new = _credential(emulator, runtime).get_token(STORAGE, claims='{"access_token":{}}').token
    assert new != old
    assert _credential(emulator, runtime).get_token(STORAGE).token == new


@pytest.mark.parametrize("source", ["service_fabric", "workload_identity"])
def test_not_used_for_service_fabric_or_workload_identity(
    emulator_factory: Any, tmp_path: Path, source: str
) -> None:
    emulator = emulator_factory(source)
    runtime = _runtime_dir(tmp_path)
    env = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    credential = ManagedIdentityCredential(_environ=env, machine_cache=True, **emulator.credential_kwargs)
    assert credential._engine.machine_key is None
    assert not (runtime / "msi-credential").exists()


def test_the_environment_variable_turns_it_on_and_the_keyword_wins(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "MSI_CREDENTIAL_MACHINE_CACHE": "1"}
    assert ManagedIdentityCredential(_environ=env)._engine.machine_key is not None
    assert ManagedIdentityCredential(_environ=env, machine_cache=False)._engine.machine_key is None
    assert ManagedIdentityCredential(_environ={})._engine.machine_key is None
    assert AsyncCredential(_environ=env)._engine.machine_key is not None


@pytest.mark.parametrize("value", ["yes please", 1, "1"])
def test_the_keyword_is_validated_at_construction(value: Any) -> None:
    with pytest.raises(ValueError, match="machine_cache"):
        ManagedIdentityCredential(machine_cache=value)
    with pytest.raises(ValueError, match="machine_cache"):
        AsyncCredential(machine_cache=value)


def test_a_bad_environment_value_is_refused() -> None:
    with pytest.raises(ValueError, match="MSI_CREDENTIAL_MACHINE_CACHE"):
        ManagedIdentityCredential(_environ={"MSI_CREDENTIAL_MACHINE_CACHE": "maybe"})


async def test_the_async_face_shares_through_the_machine_cache(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    runtime = _runtime_dir(tmp_path)
    env = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    async with AsyncCredential(_environ=env, machine_cache=True, share_cache=False) as credential:
        first = (await credential.get_token(STORAGE)).token
    assert _credential(emulator, runtime).get_token(STORAGE).token == first
    assert len(_token_requests(emulator)) == 1


def test_a_process_holding_the_token_in_memory_never_touches_the_machine_cache(
    emulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msi_credential._transport import machine_cache

    emulator = emulator_factory("app_service")
    credential = _credential(emulator, _runtime_dir(tmp_path))
    first = credential.get_token(STORAGE).token

    def refuse(*args: Any) -> None:
        raise AssertionError("the machine cache was consulted on a cache hit")

    monkeypatch.setattr(machine_cache, "perform", refuse)
    assert credential.get_token(STORAGE).token == first
    assert credential.get_token_info(STORAGE + "/.default").token == first
