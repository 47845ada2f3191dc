"""How long a caller waits on a request another caller leads (msi_credential/_transport/flight.py, JoinLimit):
a thread or task that joins another credential's request for the same token gets its own ``timeout`` error when
its own time is up. Real credentials against the emulator, on a monotonic clock that jumps."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential
from msi_credential.emulator import Fault

from .support import SCOPE


class JumpingClock:
    """A monotonic clock that moves 2 s at every reading: a 1 s wait is over by its first check."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 2.0
        return self.now


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
