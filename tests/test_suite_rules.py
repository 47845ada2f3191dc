"""The suite's own rules: checked on its source, no real sleeps or wall-clock timing and no skip that CI would hide;
checked on its guards, the socket guard of tests/conftest.py catches a connection off this machine."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from .conftest import NonLoopbackConnection
from .skips import skip_or_fail_in_ci

TESTS = Path(__file__).resolve().parent

# Real waiting or timing, where it is the point: the soak runs for a wall-clock minute; Azurite's start-up is a
# child process the fixture polls and times (a printed figure, not an assertion); the emulator's own test of its
# `delay` knob can only observe a delay on the clock; the machine cache worker process reports its wall time to
# benchmarks/machine_cache.py (a printed figure, never asserted).
WALL_CLOCK_ALLOWED = {
    "machine_cache_worker.py": 2,
    "transport/test_drivers.py": 7,
    "e2e/conftest.py": 3,
    "emulator/test_server.py": 4,
}
# Plain skips: the CI-aware helper itself, the e2e fixture that fails under CI itself, and a skip for kernels
# other than Linux (CI is Linux).
PLAIN_SKIP_ALLOWED = {"skips.py": 1, "e2e/conftest.py": 1, "engine/sources/test_imds.py": 1}

WALL_CLOCK = re.compile(r"\btime\.(sleep|perf_counter|monotonic)\(|asyncio\.sleep\((?!0\))")
PLAIN_SKIP = re.compile(r"\bpytest\.skip\(")


def _sources() -> dict[str, str]:
    return {
        path.relative_to(TESTS).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(TESTS.rglob("*.py"))
        if path.name != Path(__file__).name
    }


def test_no_test_sleeps_or_reads_a_wall_clock_outside_the_listed_places() -> None:
    found = {name: len(WALL_CLOCK.findall(text)) for name, text in _sources().items()}
    found = {name: count for name, count in found.items() if count}

    assert found == WALL_CLOCK_ALLOWED


def test_no_plain_skip_outside_the_listed_places() -> None:
    found = {name: len(PLAIN_SKIP.findall(text)) for name, text in _sources().items()}

    assert {name: count for name, count in found.items() if count} == PLAIN_SKIP_ALLOWED


def test_a_skip_fails_when_ci_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        skip_or_fail_in_ci("needs something")


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_a_skip_skips_when_ci_is_not_set(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)

    with pytest.raises(pytest.skip.Exception):
        skip_or_fail_in_ci("needs something")


# ----------------------------------------------------------------------------------------------- socket guard
# The guard itself: it must catch a non-loopback connect even when the code under test swallows errors.


def test_socket_guard_refuses_non_loopback_connect(socket_guard: list[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NonLoopbackConnection):
            sock.connect(("169.254.169.254", 80))
    finally:
        sock.close()
    assert socket_guard == ["('169.254.169.254', 80)"]
    socket_guard.clear()  # the violation was the point of this test


def test_socket_guard_allows_loopback(socket_guard: list[str]) -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(server.getsockname())
    finally:
        client.close()
        server.close()
    assert socket_guard == []
