"""The machine cache (msi_credential/_transport/machine_cache.py): its file rules one function at a time, then
machine_cache=True through the credential with real processes.

The file rules are socket-free and process-free: the functions are called directly on a cache directory made under
tmp_path; the lock waits run on an injected monotonic clock and an injected poll (no thread, no sleep), a second open
of the same lock file standing in for another process (flock locks belong to an open file, so the two exclude each
other). The owner checks use a patched ``os.geteuid``, so they behave the same when the suite runs as root. In the
mutation run (docs/mutation.md).

The last section starts real processes (tests/machine_cache_worker.py) against the emulator: tokens shared by one
user's processes on this machine, a holder killed or hung mid-request, entries and directories others could touch,
and the keyword and environment variable that turn the cache on.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import fcntl as real_fcntl
import json
import logging
import os
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional

import pytest

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential._engine.effects import (
    MachineEntry,
    MachineFound,
    MachineLookup,
    MachineStore,
    MachineThrottle,
)
from msi_credential._engine.record import replace
from msi_credential._transport import machine_cache
from msi_credential.aio import ManagedIdentityCredential as AsyncCredential
from msi_credential.emulator import Fault, UserAssignedIdentity

from .support import wait_for

pytestmark = pytest.mark.skipif(not hasattr(os, "geteuid"), reason="the machine cache is POSIX-only")

NAME = "ab" * 32  # entry names are sha256 hex digests
OTHER = "cd" * 32
TAIL = "; using the in-process cache only"
NOW = 1000.0


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fresh warning memory and held set, umask 022, and a scratch working directory (nothing lands elsewhere)."""
    monkeypatch.setattr(machine_cache, "_warned", set())
    monkeypatch.setattr(machine_cache, "_held", set())
    monkeypatch.setattr(machine_cache, "_locked_paths", {})
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    old_umask = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old_umask)
        for descriptor in list(machine_cache._held):
            machine_cache.release(descriptor)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "cache"
    directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)
    return directory


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[str]]]:
    with caplog.at_level(logging.INFO, logger="msi_credential"):
        yield lambda: [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def _body(name: str = NAME, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "name": name,
        "token": "tok-1",
        "token_type": "PoP",
        "expires_on": 2000,
        "info_refresh_on": 1500,
        "refresh_on": 1200,
        "mandatory_at": 1800,
    }
    body.update(changes)
    return body


EXPECTED = MachineEntry(
    token="tok-1",
    expires_on=2000,
    refresh_on=1200.0,
    mandatory_at=1800.0,
    token_type="PoP",
    info_refresh_on=1500,
)


def _write(path: Path, content: Any, mode: int = 0o600) -> Path:
    data = content if isinstance(content, bytes) else json.dumps(content).encode("utf-8")
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _stat(mode: int, uid: Optional[int] = None) -> os.stat_result:
    owner = os.geteuid() if uid is None else uid
    return os.stat_result((mode, 1, 1, 1, owner, 0, 0, 0, 0, 0))


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _other_holder(directory: Path, name: str = NAME) -> int:
    """Another process's hold on the lock: a second open file description of the lock file, flocked."""
    descriptor = os.open(directory / (name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    real_fcntl.flock(descriptor, real_fcntl.LOCK_EX | real_fcntl.LOCK_NB)
    return descriptor


def _lock_is_free(directory: Path, name: str = NAME) -> bool:
    try:
        descriptor = os.open(directory / (name + ".lock"), os.O_RDWR)
    except FileNotFoundError:
        return True  # its last holder removed it
    try:
        real_fcntl.flock(descriptor, real_fcntl.LOCK_EX | real_fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)


def _is_open(descriptor: int) -> bool:
    try:
        os.fstat(descriptor)
        return True
    except OSError:
        return False


def _fifo_that_must_not_block(fifo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A FIFO at ``fifo``; opening it without O_NONBLOCK fails the test (it would block until a writer comes)."""
    os.mkfifo(fifo, 0o600)
    real_open = os.open

    def guarded_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if str(path) == str(fifo) and not flags & os.O_NONBLOCK:
            raise AssertionError("a FIFO opened without O_NONBLOCK blocks the reader until a writer comes")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", guarded_open)


def _opens_with_failing_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every os.read fails (EIO); returns the descriptors os.open gives from now on."""
    opened: list[int] = []
    real_open = os.open

    def spy_open(*args: Any, **kwargs: Any) -> int:
        descriptor = real_open(*args, **kwargs)
        opened.append(descriptor)
        return descriptor

    def failing_read(descriptor: int, size: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "read", failing_read)
    return opened


class _Clock:
    """time.monotonic for lookup: each call returns the next value (the last one repeats)."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def monotonic(self) -> float:
        self.calls += 1
        return self.values.pop(0) if len(self.values) > 1 else self.values[0]


def _inject(
    monkeypatch: pytest.MonkeyPatch, clock: _Clock, on_poll: Optional[Callable[[], None]] = None
) -> list[Any]:
    """Inject the clock and the poll; each poll runs ``on_poll`` (another process acting meanwhile)."""
    polls: list[Any] = []

    class Event:
        def wait(self, timeout: Any) -> bool:
            polls.append(timeout)
            if on_poll is None:
                raise AssertionError("lookup polled where it must not wait")
            on_poll()
            return False

    monkeypatch.setattr(machine_cache, "time", SimpleNamespace(monotonic=clock.monotonic))
    monkeypatch.setattr(machine_cache, "threading", SimpleNamespace(Event=Event))
    return polls


def _lookup(directory: Path, now: float = NOW, wait: float = 1.0, name: str = NAME) -> MachineLookup:
    return MachineLookup(str(directory), name, now, wait)


def _refused_and_warned_once_each(
    refused: Callable[[Any], bool],
    subjects: tuple[Any, Any],
    paths: tuple[Any, Any],
    words: str,
    warnings: Callable[[], list[str]],
) -> None:
    """Each subject is refused (``refused(subject)`` holds), the first one twice: one warning per path, the first
    subject's path first, in these words."""
    first, second = subjects
    for subject in (first, second, first):
        assert refused(subject)
    assert warnings() == [f"machine cache: {path}{words}{TAIL}" for path in paths]


# ------------------------------------------------------------------------------------------ available, directory


def test_available_is_true_on_posix_with_fcntl() -> None:
    assert machine_cache.available() is True


def test_available_is_false_without_fcntl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_cache, "fcntl", None)
    assert machine_cache.available() is False


def test_available_is_false_without_geteuid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "geteuid")
    assert machine_cache.available() is False


def test_default_directory_is_msi_credential_under_xdg_runtime_dir_stripped() -> None:
    assert machine_cache.default_directory({"XDG_RUNTIME_DIR": "/run/user/7"}) == "/run/user/7/msi-credential"
    assert machine_cache.default_directory({"XDG_RUNTIME_DIR": "  /run/u \n"}) == "/run/u/msi-credential"


@pytest.mark.parametrize("environ", [{}, {"XDG_RUNTIME_DIR": ""}, {"XDG_RUNTIME_DIR": "  "}, {"HOME": "/h"}])
def test_default_directory_without_xdg_runtime_dir_is_tempdir_msi_credential_uid(
    environ: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert machine_cache.default_directory(environ) == str(tmp_path / "tmp" / "msi-credential-4242")


# ---------------------------------------------------------------------------------------------------- _warn


def test_warn_logs_the_message_word_for_word_once_per_subject(warnings: Callable[[], list[str]]) -> None:
    machine_cache._warn("/a", "first about a")
    machine_cache._warn("/a", "second about a")
    machine_cache._warn("/b", "about b")
    assert warnings() == [
        "machine cache: first about a; using the in-process cache only",
        "machine cache: about b; using the in-process cache only",
    ]
    assert machine_cache._warned == {"/a", "/b"}


def test_warn_logs_at_warning_level_on_the_msi_credential_logger(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        machine_cache._warn("x", "m")
    assert [(r.name, r.levelno, r.msg, r.args) for r in caplog.records] == [
        ("msi_credential", logging.WARNING, "machine cache: %s; using the in-process cache only", ("m",))
    ]


# ------------------------------------------------------------------------------------------------- _private


@pytest.mark.parametrize("mode", [0o700, 0o600, 0o400, 0o500, 0o000, 0o4700, 0o1700, 0o2700])
def test_private_accepts_our_uid_with_no_group_or_other_bits(mode: int) -> None:
    assert machine_cache._private(_stat(stat.S_IFDIR | mode)) is True
    assert machine_cache._private(_stat(stat.S_IFREG | mode)) is True


@pytest.mark.parametrize(
    "mode", [0o701, 0o702, 0o704, 0o710, 0o720, 0o740, 0o777, 0o644, 0o077, 0o070, 0o007]
)
def test_private_refuses_any_group_or_other_bit(mode: int) -> None:
    assert machine_cache._private(_stat(stat.S_IFREG | mode)) is False


def test_private_refuses_another_owner() -> None:
    assert machine_cache._private(_stat(stat.S_IFREG | 0o600, uid=os.geteuid() + 1)) is False
    assert machine_cache._private(_stat(stat.S_IFREG | 0o600, uid=os.geteuid())) is True


# ---------------------------------------------------------------------------------------- _checked_directory


def test_checked_directory_creates_a_missing_directory_0700(tmp_path: Path) -> None:
    directory = tmp_path / "msi-credential-0"
    assert machine_cache._checked_directory(str(directory)) is True
    assert stat.S_ISDIR(os.lstat(directory).st_mode)
    assert _mode(directory) == 0o700


def test_checked_directory_accepts_an_existing_private_directory(cache_dir: Path) -> None:
    assert machine_cache._checked_directory(str(cache_dir)) is True
    assert machine_cache._checked_directory(str(cache_dir)) is True


def test_checked_directory_outside_xdg_does_not_check_the_parent(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir()
    os.chmod(parent, 0o777)
    assert machine_cache._checked_directory(str(parent / "msi-credential-0")) is True


def test_checked_directory_under_a_private_xdg_runtime_dir_creates_msi_credential(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    assert machine_cache._checked_directory(str(runtime / "msi-credential")) is True
    assert _mode(runtime / "msi-credential") == 0o700


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o777, 0o711])
def test_checked_directory_refuses_an_existing_directory_open_to_group_or_others(
    mode: int, cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    os.chmod(cache_dir, mode)
    assert machine_cache._checked_directory(str(cache_dir)) is False
    assert warnings() == [
        f"machine cache: {cache_dir} is not owned by this user with mode 0700 (refused){TAIL}"
    ]
    assert _mode(cache_dir) == mode  # left as it is


def test_checked_directory_refuses_a_directory_of_another_owner(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: os.lstat(cache_dir).st_uid + 1)
    assert machine_cache._checked_directory(str(cache_dir)) is False
    assert warnings() == [
        f"machine cache: {cache_dir} is not owned by this user with mode 0700 (refused){TAIL}"
    ]


@pytest.mark.parametrize(
    ("below", "words"),
    [
        pytest.param("", " is not owned by this user with mode 0700 (refused)", id="directory"),
        pytest.param(
            "msi-credential",
            " (XDG_RUNTIME_DIR) is not a directory private to this user",
            id="xdg-runtime-dir",
        ),
    ],
)
def test_checked_directory_warns_once_per_directory_or_xdg_runtime_dir_refused(
    below: str, words: str, tmp_path: Path, warnings: Callable[[], list[str]]
) -> None:
    """A directory open to others, or the XDG_RUNTIME_DIR (open to others) the directory would be made in."""
    first, second = tmp_path / "one", tmp_path / "two"
    for directory in (first, second):
        directory.mkdir()
        os.chmod(directory, 0o755)
    _refused_and_warned_once_each(
        lambda directory: machine_cache._checked_directory(str(directory / below)) is False,
        (first, second),
        (first, second),
        words,
        warnings,
    )


def test_checked_directory_refuses_a_symlink_to_a_private_directory(
    tmp_path: Path, cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    link = tmp_path / "link"
    link.symlink_to(cache_dir)
    other = tmp_path / "link2"
    other.symlink_to(cache_dir)
    assert machine_cache._checked_directory(str(link)) is False
    assert machine_cache._checked_directory(str(other)) is False
    assert warnings() == [
        f"machine cache: {link} is not a directory (a link or a file is refused){TAIL}",
        f"machine cache: {other} is not a directory (a link or a file is refused){TAIL}",
    ]
    assert list(cache_dir.iterdir()) == []


def test_checked_directory_refuses_a_file_in_its_place(
    tmp_path: Path, warnings: Callable[[], list[str]]
) -> None:
    file = _write(tmp_path / "msi-credential-0", b"", 0o600)
    assert machine_cache._checked_directory(str(file)) is False
    assert warnings() == [f"machine cache: {file} is not a directory (a link or a file is refused){TAIL}"]


def test_checked_directory_warns_when_it_cannot_create_the_directory(
    tmp_path: Path, warnings: Callable[[], list[str]]
) -> None:
    first = tmp_path / "missing" / "msi-credential-0"
    second = tmp_path / "missing" / "msi-credential-1"
    assert machine_cache._checked_directory(str(first)) is False
    assert machine_cache._checked_directory(str(second)) is False
    assert warnings() == [
        f"machine cache: cannot create {first}: No such file or directory{TAIL}",
        f"machine cache: cannot create {second}: No such file or directory{TAIL}",
    ]
    assert not (tmp_path / "missing").exists()


def test_checked_directory_warns_when_it_cannot_stat_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    real_lstat = os.lstat

    def lstat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if str(path) in (str(first), str(second)):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", lstat)
    assert machine_cache._checked_directory(str(first)) is False
    assert machine_cache._checked_directory(str(second)) is False
    assert warnings() == [
        f"machine cache: cannot stat {first}: Permission denied{TAIL}",
        f"machine cache: cannot stat {second}: Permission denied{TAIL}",
    ]


def test_checked_directory_refuses_a_missing_xdg_runtime_dir(
    tmp_path: Path, warnings: Callable[[], list[str]]
) -> None:
    first, second = tmp_path / "gone1", tmp_path / "gone2"
    assert machine_cache._checked_directory(str(first / "msi-credential")) is False
    assert machine_cache._checked_directory(str(second / "msi-credential")) is False
    assert warnings() == [
        f"machine cache: {first} (XDG_RUNTIME_DIR) does not exist{TAIL}",
        f"machine cache: {second} (XDG_RUNTIME_DIR) does not exist{TAIL}",
    ]
    assert not first.exists()


@pytest.mark.parametrize("kind", ["open", "group", "file", "link", "foreign"])
def test_checked_directory_refuses_an_xdg_runtime_dir_not_private_to_this_user(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    runtime = tmp_path / "runtime"
    if kind == "file":
        _write(runtime, b"", 0o600)
    elif kind == "link":
        target = tmp_path / "real-runtime"
        target.mkdir(mode=0o700)
        runtime.symlink_to(target)
    else:
        runtime.mkdir(mode=0o700)
        os.chmod(runtime, {"open": 0o777, "group": 0o750, "foreign": 0o700}[kind])
    if kind == "foreign":
        monkeypatch.setattr(os, "geteuid", lambda: os.lstat(runtime).st_uid + 1)
    assert machine_cache._checked_directory(str(runtime / "msi-credential")) is False
    assert warnings() == [
        f"machine cache: {runtime} (XDG_RUNTIME_DIR) is not a directory private to this user{TAIL}"
    ]
    assert not os.path.lexists(runtime / "msi-credential")
    if kind == "link":
        assert list((tmp_path / "real-runtime").iterdir()) == []


# ------------------------------------------------------------------------------------------------ _read_entry


def test_read_entry_returns_a_valid_entry_with_float_windows(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body())
    entry = machine_cache._read_entry(str(cache_dir), NAME)
    assert entry == EXPECTED
    assert entry is not None
    assert (entry.token, entry.token_type, entry.info_refresh_on) == ("tok-1", "PoP", 1500)
    assert type(entry.refresh_on) is float and type(entry.mandatory_at) is float
    assert type(entry.expires_on) is int


def test_read_entry_accepts_float_windows_and_no_info_refresh_on(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(info_refresh_on=None, refresh_on=1200.5, mandatory_at=1800.25))
    assert machine_cache._read_entry(str(cache_dir), NAME) == MachineEntry(
        token="tok-1", expires_on=2000, refresh_on=1200.5, mandatory_at=1800.25, token_type="PoP"
    )


def test_read_entry_accepts_owner_only_bits_other_than_0600(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(), 0o400)
    assert machine_cache._read_entry(str(cache_dir), NAME) == EXPECTED


def test_read_entry_of_a_missing_file_is_none(cache_dir: Path) -> None:
    assert machine_cache._read_entry(str(cache_dir), NAME) is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b'{"v": 1, "name": "',
        b"\x00garbage",
        b"\xff\xfe\xfd",
        b"[]",
        b'["v", 1]',
        b'"v"',
        b"1",
        b"null",
    ],
)
def test_read_entry_of_a_corrupt_or_non_object_file_is_none(content: bytes, cache_dir: Path) -> None:
    _write(cache_dir / NAME, content)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None


@pytest.mark.parametrize(
    "changes",
    [
        {"v": 2},
        {"v": "1"},
        {"v": None},
        {"v": 2, "name": OTHER},
        {"name": OTHER},
        {"name": None},
        {"token": ""},
        {"token": 5},
        {"token": None},
        {"token": ["tok"]},
        {"token_type": 5},
        {"token_type": None},
        {"token": "", "token_type": 5},
        {"expires_on": "2000"},
        {"expires_on": 2000.0},
        {"expires_on": True},
        {"expires_on": None},
        {"info_refresh_on": "1500"},
        {"info_refresh_on": 1500.0},
        {"info_refresh_on": True},
        {"info_refresh_on": False},
        {"refresh_on": True},
        {"refresh_on": "1200"},
        {"refresh_on": None},
        {"mandatory_at": False},
        {"mandatory_at": "1800"},
        {"mandatory_at": [1800]},
    ],
)
def test_read_entry_with_a_wrong_field_or_type_is_none(changes: dict[str, Any], cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(**changes))
    assert machine_cache._read_entry(str(cache_dir), NAME) is None


@pytest.mark.parametrize("missing", ["v", "name", "token", "token_type", "expires_on", "info_refresh_on",
                                     "refresh_on", "mandatory_at"])  # fmt: skip
def test_read_entry_missing_a_field_is_none(missing: str, cache_dir: Path) -> None:
    body = _body()
    del body[missing]
    _write(cache_dir / NAME, body)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None


def test_read_entry_written_for_another_key_is_none(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(name=OTHER))
    assert machine_cache._read_entry(str(cache_dir), NAME) is None


def test_read_entry_of_exactly_64_kib_is_read_and_one_byte_more_is_not(cache_dir: Path) -> None:
    data = json.dumps(_body()).encode("utf-8")
    limit = 64 * 1024
    _write(cache_dir / NAME, data + b" " * (limit - len(data)))
    assert os.path.getsize(cache_dir / NAME) == limit
    assert machine_cache._read_entry(str(cache_dir), NAME) == EXPECTED
    _write(cache_dir / NAME, data + b" " * (limit + 1 - len(data)))
    assert machine_cache._read_entry(str(cache_dir), NAME) is None


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
def test_read_entry_readable_or_writable_by_others_is_not_trusted(
    mode: int, cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    path = _write(cache_dir / NAME, _body(), mode)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None
    assert warnings() == [
        f"machine cache: {path} is not owned by this user with mode 0600: not trusted, will be replaced{TAIL}"
    ]


def test_read_entry_of_another_owner_is_not_trusted_once_warned_per_file(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    first = _write(cache_dir / NAME, _body())
    second = _write(cache_dir / OTHER, _body(name=OTHER))
    monkeypatch.setattr(os, "geteuid", lambda: os.lstat(first).st_uid + 1)
    _refused_and_warned_once_each(
        lambda name: machine_cache._read_entry(str(cache_dir), name) is None,
        (NAME, OTHER),
        (first, second),
        " is not owned by this user with mode 0600: not trusted, will be replaced",
        warnings,
    )


def test_read_entry_does_not_follow_a_symlink_to_a_valid_entry(
    tmp_path: Path, cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    target = _write(tmp_path / "elsewhere", _body())
    (cache_dir / NAME).symlink_to(target)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None
    assert warnings() == []


def test_read_entry_of_a_directory_is_none_without_a_warning(
    cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    (cache_dir / NAME).mkdir(mode=0o700)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None
    assert warnings() == []


def test_read_entry_opens_a_fifo_without_blocking_and_ignores_it(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    _fifo_that_must_not_block(cache_dir / NAME, monkeypatch)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None
    assert warnings() == []


def test_read_entry_that_fails_to_read_is_none(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(cache_dir / NAME, _body())
    opened = _opens_with_failing_reads(monkeypatch)
    assert machine_cache._read_entry(str(cache_dir), NAME) is None
    assert len(opened) == 1 and not _is_open(opened[0])


# ----------------------------------------------------------------------------------------------------- _fresh


def test_fresh_needs_an_entry_before_both_refresh_on_and_expires_on() -> None:
    entry = MachineEntry(token="t", expires_on=2000, refresh_on=1200.0, mandatory_at=1800.0)
    assert machine_cache._fresh(None, 0.0) is False
    assert machine_cache._fresh(entry, 1199.5) is True
    assert machine_cache._fresh(entry, 1200.0) is False  # at refresh_on: stale
    assert machine_cache._fresh(entry, 1300.0) is False
    late = MachineEntry(token="t", expires_on=2000, refresh_on=3000.0, mandatory_at=2500.0)
    assert machine_cache._fresh(late, 1999.5) is True
    assert machine_cache._fresh(late, 2000.0) is False  # at expires_on: expired
    assert machine_cache._fresh(late, 2500.0) is False


# -------------------------------------------------------------------------------------------------- _open_lock


def test_open_lock_creates_name_lock_0600_in_the_directory_and_returns_its_descriptor(
    cache_dir: Path,
) -> None:
    descriptor = machine_cache._open_lock(str(cache_dir), NAME)
    assert descriptor is not None
    try:
        path = cache_dir / (NAME + ".lock")
        assert stat.S_ISREG(os.lstat(path).st_mode)
        assert _mode(path) == 0o600
        assert os.fstat(descriptor).st_ino == os.lstat(path).st_ino
        assert os.listdir(cache_dir) == [NAME + ".lock"]
        assert os.listdir(".") == []
        assert os.get_inheritable(descriptor) is False
        os.write(descriptor, b"x")  # opened for writing too
    finally:
        os.close(descriptor)


def test_open_lock_reuses_an_existing_private_lock_file(cache_dir: Path) -> None:
    path = _write(cache_dir / (NAME + ".lock"), b"old", 0o600)
    descriptor = machine_cache._open_lock(str(cache_dir), NAME)
    assert descriptor is not None
    try:
        assert os.fstat(descriptor).st_ino == os.lstat(path).st_ino
        assert path.read_bytes() == b"old"
    finally:
        os.close(descriptor)


def test_open_lock_in_a_missing_directory_is_none(tmp_path: Path, warnings: Callable[[], list[str]]) -> None:
    assert machine_cache._open_lock(str(tmp_path / "missing"), NAME) is None
    assert warnings() == []


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o601])
def test_open_lock_refuses_a_lock_file_open_to_others_once_per_file(
    mode: int, cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    first = _write(cache_dir / (NAME + ".lock"), b"", mode)
    second = _write(cache_dir / (OTHER + ".lock"), b"", mode)
    _refused_and_warned_once_each(
        lambda name: machine_cache._open_lock(str(cache_dir), name) is None,
        (NAME, OTHER),
        (first, second),
        " is not owned by this user with mode 0600 (refused)",
        warnings,
    )


def test_open_lock_refuses_a_lock_file_of_another_owner(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    path = _write(cache_dir / (NAME + ".lock"), b"", 0o600)
    monkeypatch.setattr(os, "geteuid", lambda: os.lstat(path).st_uid + 1)
    assert machine_cache._open_lock(str(cache_dir), NAME) is None
    assert warnings() == [f"machine cache: {path} is not owned by this user with mode 0600 (refused){TAIL}"]


def test_open_lock_refuses_a_private_fifo_in_place_of_the_lock_file(
    cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    path = cache_dir / (NAME + ".lock")
    os.mkfifo(path, 0o600)
    end = os.open(path, os.O_RDWR | os.O_NONBLOCK)  # someone holds it open: no open of it can block
    try:
        assert machine_cache._open_lock(str(cache_dir), NAME) is None
    finally:
        os.close(end)
    assert warnings() == [f"machine cache: {path} is not owned by this user with mode 0600 (refused){TAIL}"]


def test_open_lock_does_not_follow_a_symlink(
    tmp_path: Path, cache_dir: Path, warnings: Callable[[], list[str]]
) -> None:
    target = _write(tmp_path / "target", b"", 0o600)
    (cache_dir / (NAME + ".lock")).symlink_to(target)
    dangling = cache_dir / (OTHER + ".lock")
    dangling.symlink_to(tmp_path / "nowhere")
    assert machine_cache._open_lock(str(cache_dir), NAME) is None
    assert machine_cache._open_lock(str(cache_dir), OTHER) is None
    assert not (tmp_path / "nowhere").exists()
    assert warnings() == []


def test_open_lock_of_a_directory_in_its_place_is_none(cache_dir: Path) -> None:
    (cache_dir / (NAME + ".lock")).mkdir(mode=0o700)
    assert machine_cache._open_lock(str(cache_dir), NAME) is None


# ------------------------------------------------------------------------------------------------------ lookup


def test_lookup_returns_a_fresh_entry_without_creating_or_taking_the_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / NAME, _body())
    clock = _Clock(5.0)
    _inject(monkeypatch, clock)
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir, now=1199.0), held) == MachineFound(entry=EXPECTED)
    assert held == [] and machine_cache._held == set()
    assert os.listdir(cache_dir) == [NAME]


def test_lookup_returns_a_fresh_entry_at_once_while_another_process_holds_the_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / NAME, _body())
    other = _other_holder(cache_dir)
    try:
        _inject(monkeypatch, _Clock(0.0))
        held: list[int] = []
        assert machine_cache.lookup(_lookup(cache_dir, now=NOW), held) == MachineFound(entry=EXPECTED)
        assert held == []
    finally:
        os.close(other)


def test_lookup_without_an_entry_takes_the_lock_and_keeps_it(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _inject(monkeypatch, _Clock(50.0))
    held: list[int] = []
    found = machine_cache.lookup(_lookup(cache_dir), held)
    assert found == MachineFound(entry=None, locked=True)
    assert found.locked is True
    assert len(held) == 1 and machine_cache._held == set(held)
    assert _mode(cache_dir / (NAME + ".lock")) == 0o600
    assert not _lock_is_free(cache_dir)
    machine_cache.release(held[0])
    assert machine_cache._held == set()
    assert _lock_is_free(cache_dir)


@pytest.mark.parametrize(
    "changes", [{"refresh_on": NOW}, {"expires_on": int(NOW)}, {"refresh_on": 10, "v": 2}]
)
def test_lookup_with_a_stale_expired_or_foreign_entry_takes_the_lock(
    changes: dict[str, Any], cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / NAME, _body(**changes))
    _inject(monkeypatch, _Clock(50.0))
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir, now=NOW), held) == MachineFound(locked=True)
    assert len(held) == 1 and not _lock_is_free(cache_dir)


def test_lookup_in_a_refused_directory_finds_nothing_and_locks_nothing(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / NAME, _body())
    os.chmod(cache_dir, 0o755)
    _inject(monkeypatch, _Clock(0.0))
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir, now=NOW), held) == MachineFound()
    assert held == [] and os.listdir(cache_dir) == [NAME]


def test_lookup_when_not_available_finds_nothing_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(machine_cache, "fcntl", None)
    held: list[int] = []
    assert machine_cache.lookup(_lookup(tmp_path / "msi-credential-0"), held) == MachineFound()
    assert held == [] and not (tmp_path / "msi-credential-0").exists()


def test_lookup_with_a_refused_lock_file_finds_nothing(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, warnings: Callable[[], list[str]]
) -> None:
    lock = _write(cache_dir / (NAME + ".lock"), b"", 0o644)
    _inject(monkeypatch, _Clock(0.0))
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir), held) == MachineFound()
    assert held == [] and machine_cache._held == set()
    assert warnings() == [f"machine cache: {lock} is not owned by this user with mode 0600 (refused){TAIL}"]


def test_lookup_gives_up_when_the_wait_reaches_the_bound_and_logs_it(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    other = _other_holder(cache_dir)
    try:
        polls = _inject(monkeypatch, _Clock(100.0, 101.5))
        held: list[int] = []
        with caplog.at_level(logging.INFO, logger="msi_credential"):
            assert machine_cache.lookup(_lookup(cache_dir, wait=1.5), held) == MachineFound()
        assert polls == [] and held == [] and machine_cache._held == set()
        assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
            (logging.INFO, "machine cache: another process held the token request for 1.5 s; asking too")
        ]
    finally:
        os.close(other)
    assert _lock_is_free(cache_dir)  # the waiter's descriptor is closed


def test_lookup_with_a_zero_wait_gives_up_at_the_first_refusal(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    other = _other_holder(cache_dir)
    try:
        polls = _inject(monkeypatch, _Clock(7.0))
        with caplog.at_level(logging.INFO, logger="msi_credential"):
            assert machine_cache.lookup(_lookup(cache_dir, wait=0.0), []) == MachineFound()
        assert polls == []
        assert caplog.messages == [
            "machine cache: another process held the token request for 0.0 s; asking too"
        ]
    finally:
        os.close(other)


def test_lookup_polls_every_10_ms_until_the_holder_leaves_then_holds_the_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = [_other_holder(cache_dir)]
    rounds: list[int] = []

    def holder_leaves_on_the_second_poll() -> None:
        rounds.append(1)
        if len(rounds) == 2:
            os.close(other.pop())

    polls = _inject(monkeypatch, _Clock(100.0, 100.4, 100.9, 100.95), holder_leaves_on_the_second_poll)
    held: list[int] = []
    try:
        assert machine_cache.lookup(_lookup(cache_dir, wait=1.0), held) == MachineFound(locked=True)
    finally:
        for descriptor in other:
            os.close(descriptor)
    assert polls == [0.01, 0.01]
    assert len(held) == 1 and machine_cache._held == set(held)
    assert not _lock_is_free(cache_dir)


def _lookup_while_the_holder_stores_and_leaves(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, clock: _Clock
) -> tuple[MachineFound, list[int]]:
    """A lookup that finds the lock held by another process, which at the first poll stores an entry (refresh_on
    NOW + 5, expires_on NOW + 10) and leaves; the wait reads ``clock``. What it found, and the locks it holds."""
    other = [_other_holder(cache_dir)]

    def holder_stores_and_leaves() -> None:
        _write(cache_dir / NAME, _body(refresh_on=NOW + 5, expires_on=int(NOW) + 10))
        os.close(other.pop())

    _inject(monkeypatch, clock, holder_stores_and_leaves)
    held: list[int] = []
    return machine_cache.lookup(_lookup(cache_dir, now=NOW, wait=1.0), held), held


def test_lookup_after_the_wait_returns_the_entry_the_holder_stored_and_drops_the_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the clock moves 4 s while waiting: the entry is still fresh (refresh_on is NOW + 5)
    found, held = _lookup_while_the_holder_stores_and_leaves(
        cache_dir, monkeypatch, _Clock(100.0, 100.5, 104.0)
    )
    assert found == MachineFound(entry=replace(EXPECTED, refresh_on=NOW + 5, expires_on=int(NOW) + 10))
    assert found.locked is False
    assert held == [] and machine_cache._held == set()
    assert _lock_is_free(cache_dir)


def test_lookup_after_the_wait_counts_the_time_waited_against_the_entry(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the clock moves 6 s while waiting: at NOW + 6 the entry is stale, so this process asks itself
    found, held = _lookup_while_the_holder_stores_and_leaves(
        cache_dir, monkeypatch, _Clock(100.0, 100.5, 106.0)
    )
    assert found == MachineFound(locked=True)
    assert len(held) == 1 and not _lock_is_free(cache_dir)


def test_lookup_when_flock_fails_finds_nothing_and_closes_the_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []

    def flock(descriptor: int, operation: int) -> None:
        calls.append((descriptor, operation))
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(
        machine_cache,
        "fcntl",
        SimpleNamespace(flock=flock, LOCK_EX=real_fcntl.LOCK_EX, LOCK_NB=real_fcntl.LOCK_NB),
    )
    _inject(monkeypatch, _Clock(0.0))
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir), held) == MachineFound()
    assert held == [] and machine_cache._held == set()
    assert len(calls) == 1 and calls[0][1] == real_fcntl.LOCK_EX | real_fcntl.LOCK_NB
    assert not _is_open(calls[0][0])


def test_lookup_that_got_a_removed_lock_file_locks_the_current_one(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A holder removes its lock file when done; a waiter that then locks the removed file would hold a lock
    nobody else sees: it checks the path still names the file it locked, else locks the file now there."""
    path = cache_dir / (NAME + ".lock")
    holder = [_other_holder(cache_dir)]
    rounds: list[int] = []

    def others_come_and_go() -> None:
        rounds.append(1)
        os.unlink(path)  # the holder is done: removes its file, then lets go
        os.close(holder.pop())
        if len(rounds) == 1:
            holder.append(_other_holder(cache_dir))  # a newcomer creates and locks a new file meanwhile

    polls = _inject(monkeypatch, _Clock(100.0), others_come_and_go)
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir, wait=1.0), held) == MachineFound(locked=True)

    assert polls == [0.01, 0.01]  # it waited for the newcomer too, instead of holding beside it
    [descriptor] = held
    assert (os.fstat(descriptor).st_ino, os.fstat(descriptor).st_dev) == (
        os.stat(path).st_ino,
        os.stat(path).st_dev,
    )
    assert not _lock_is_free(cache_dir)


def test_a_lookup_for_a_flow_that_has_ended_gives_up_its_wait_and_keeps_no_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = [_other_holder(cache_dir)]
    held = machine_cache.Holdings()

    def the_flow_ends() -> None:
        machine_cache.release_all(held)  # a cancelled async call: its executor thread is still here

    polls = _inject(monkeypatch, _Clock(100.0), the_flow_ends)
    try:
        assert machine_cache.lookup(_lookup(cache_dir, wait=1.0), held) == MachineFound()
    finally:
        os.close(other.pop())
    assert polls == [0.01] and list(held) == [] and machine_cache._held == set()
    assert _lock_is_free(cache_dir)


def test_a_lock_taken_after_its_flow_has_ended_is_released_at_once(cache_dir: Path) -> None:
    held = machine_cache.Holdings()
    machine_cache.release_all(held)
    assert machine_cache.lookup(_lookup(cache_dir), held) == MachineFound()
    assert list(held) == [] and machine_cache._held == set()
    assert os.listdir(cache_dir) == []  # its lock file removed too


# ---------------------------------------------------------------------------------------- release, release_all


def test_release_closes_the_descriptor_drops_it_from_held_and_frees_the_lock(cache_dir: Path) -> None:
    descriptor = _other_holder(cache_dir)
    machine_cache._held.add(descriptor)
    machine_cache.release(descriptor)
    assert machine_cache._held == set()
    assert not _is_open(descriptor)
    assert _lock_is_free(cache_dir)


def test_release_of_an_already_closed_descriptor_is_silent(cache_dir: Path) -> None:
    descriptor = os.open(cache_dir, os.O_RDONLY)
    os.close(descriptor)
    machine_cache._held.add(descriptor)
    machine_cache.release(descriptor)
    assert machine_cache._held == set()


def test_release_all_releases_every_held_lock_and_empties_the_list(cache_dir: Path) -> None:
    held = [_other_holder(cache_dir, NAME), _other_holder(cache_dir, OTHER)]
    machine_cache._held.update(held)
    descriptors = list(held)
    machine_cache.release_all(held)
    assert held == [] and machine_cache._held == set()
    assert not any(_is_open(d) for d in descriptors)
    assert _lock_is_free(cache_dir, NAME) and _lock_is_free(cache_dir, OTHER)
    machine_cache.release_all(held)  # nothing left: a no-op


def test_after_fork_in_child_closes_every_held_descriptor(cache_dir: Path) -> None:
    descriptors = [_other_holder(cache_dir, NAME), _other_holder(cache_dir, OTHER)]
    machine_cache._held.update(descriptors)
    machine_cache._after_fork_in_child()
    assert machine_cache._held == set()
    assert not any(_is_open(d) for d in descriptors)
    machine_cache._after_fork_in_child()  # nothing held: a no-op


def test_release_of_a_lock_from_lookup_removes_its_file_while_still_holding_it(cache_dir: Path) -> None:
    held: list[int] = []
    assert machine_cache.lookup(_lookup(cache_dir), held) == MachineFound(locked=True)
    assert os.listdir(cache_dir) == [NAME + ".lock"]
    machine_cache.release_all(held)
    assert os.listdir(cache_dir) == [] and machine_cache._locked_paths == {}


def test_after_fork_in_child_leaves_the_parents_lock_file_in_place(cache_dir: Path) -> None:
    held: list[int] = []
    machine_cache.lookup(_lookup(cache_dir), held)
    machine_cache._after_fork_in_child()  # as in a forked child: its copy closes, the parent still holds it
    assert os.listdir(cache_dir) == [NAME + ".lock"]


def test_sweep_removes_expired_entries_and_stale_temporaries_only(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(expires_on=900))  # expired at NOW
    _write(cache_dir / OTHER, _body(name=OTHER))  # valid until 2000
    busy = "ef" * 32
    _write(cache_dir / busy, _body(name=busy, expires_on=900))  # expired, but its holder is renewing it
    holder = _other_holder(cache_dir, busy)
    foreign = _write(cache_dir / ("12" * 32), b"not json")  # not ours to judge
    stale = _write(cache_dir / ".tmp-crashed", b"x")
    os.utime(stale, (0, 0))
    fresh_temporary = _write(cache_dir / ".tmp-writing", b"x")
    try:
        assert machine_cache.sweep(str(cache_dir), NOW) == 2
    finally:
        os.close(holder)
    assert sorted(os.listdir(cache_dir)) == sorted(
        [OTHER, busy, busy + ".lock", foreign.name, fresh_temporary.name]
    )


def test_store_with_the_engines_clock_sweeps_the_directory(cache_dir: Path) -> None:
    _write(cache_dir / OTHER, _body(name=OTHER, expires_on=900))
    machine_cache.store(MachineStore(str(cache_dir), NAME, EXPECTED, NOW))
    assert os.listdir(cache_dir) == [NAME]


def test_holdings_start_open_and_empty_and_keep_what_a_lookup_locked(cache_dir: Path) -> None:
    held = machine_cache.Holdings()
    assert held.closed is False and list(held) == []
    descriptor = _other_holder(cache_dir)
    assert machine_cache._keep(held, descriptor) is True
    assert list(held) == [descriptor] and machine_cache._held == {descriptor}
    machine_cache.release_all(held)
    assert held.closed is True and machine_cache._held == set() and not _is_open(descriptor)


def test_release_whose_lock_file_cannot_be_removed_still_closes_silently(cache_dir: Path) -> None:
    descriptor = os.open(cache_dir, os.O_RDONLY)  # its "lock file" is a directory: unlink fails
    machine_cache._locked_paths[descriptor] = str(cache_dir)
    machine_cache.release(descriptor)
    assert not _is_open(descriptor) and cache_dir.is_dir()


def test_sweep_of_a_missing_directory_removes_nothing(tmp_path: Path) -> None:
    assert machine_cache.sweep(str(tmp_path / "missing"), NOW) == 0


def test_sweep_judges_only_entries_never_lock_or_hidden_files(cache_dir: Path) -> None:
    hidden, lock = ".hidden", NAME + ".lock"
    _write(cache_dir / hidden, _body(name=hidden, expires_on=900))  # expired bodies, under names
    _write(cache_dir / lock, _body(name=lock, expires_on=900))  # that are not entries
    assert machine_cache.sweep(str(cache_dir), NOW) == 0
    assert sorted(os.listdir(cache_dir)) == sorted([hidden, lock])


def test_sweep_removes_an_entry_expiring_exactly_now(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(expires_on=int(NOW)))
    assert machine_cache.sweep(str(cache_dir), NOW) == 1
    assert os.listdir(cache_dir) == []


def test_sweep_keeps_an_entry_whose_lock_file_is_refused(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body(expires_on=900))
    _write(cache_dir / (NAME + ".lock"), b"", 0o644)
    assert machine_cache.sweep(str(cache_dir), NOW) == 0
    assert NAME in os.listdir(cache_dir)


def test_sweep_keeps_an_entry_renewed_between_its_check_and_its_lock(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / NAME, _body(expires_on=900))
    real_read = machine_cache._read_entry
    reads: list[int] = []

    def renewed_after_the_first_read(directory: str, name: str) -> Any:
        reads.append(1)
        if len(reads) == 2:  # another process stored a new token meanwhile
            _write(cache_dir / NAME, _body(expires_on=2000))
        return real_read(directory, name)

    monkeypatch.setattr(machine_cache, "_read_entry", renewed_after_the_first_read)
    assert machine_cache.sweep(str(cache_dir), NOW) == 0
    assert os.listdir(cache_dir) == [NAME]


def test_a_temporary_file_is_stale_after_exactly_an_hour(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hour_old, younger = cache_dir / ".tmp-a", cache_dir / ".tmp-b"
    for path, age in ((hour_old, 3600), (younger, 3599)):
        _write(path, b"x")
        os.utime(path, (5000 - age, 5000 - age))
    monkeypatch.setattr(machine_cache, "time", SimpleNamespace(time=lambda: 5000.0))
    assert machine_cache._remove_stale_temporary(str(hour_old)) == 1
    assert machine_cache._remove_stale_temporary(str(younger)) == 0
    assert machine_cache._remove_stale_temporary(str(cache_dir / ".tmp-gone")) == 0
    assert os.listdir(cache_dir) == [younger.name]


# ------------------------------------------------------------------------------------------------------- store


def _store(directory: Path, entry: MachineEntry = EXPECTED, name: str = NAME) -> MachineStore:
    return MachineStore(str(directory), name, entry)


def test_store_writes_the_entry_0600_with_every_field(cache_dir: Path) -> None:
    assert machine_cache.store(_store(cache_dir)) is None
    path = cache_dir / NAME
    assert os.listdir(cache_dir) == [NAME]
    assert _mode(path) == 0o600
    assert json.loads(path.read_bytes().decode("utf-8")) == {
        "v": 1,
        "name": NAME,
        "token": "tok-1",
        "token_type": "PoP",
        "expires_on": 2000,
        "info_refresh_on": 1500,
        "refresh_on": 1200.0,
        "mandatory_at": 1800.0,
    }
    assert machine_cache._read_entry(str(cache_dir), NAME) == EXPECTED


def test_store_writes_null_info_refresh_on_and_non_ascii_tokens(cache_dir: Path) -> None:
    entry = MachineEntry(token="jeton-é", expires_on=2000, refresh_on=1200.5, mandatory_at=1800.0)
    machine_cache.store(_store(cache_dir, entry))
    body = json.loads((cache_dir / NAME).read_bytes())
    assert body["info_refresh_on"] is None and body["token_type"] == "Bearer" and body["token"] == "jeton-é"
    assert machine_cache._read_entry(str(cache_dir), NAME) == entry


def test_store_replaces_an_old_or_corrupt_entry(cache_dir: Path) -> None:
    _write(cache_dir / NAME, b"\x00garbage", 0o644)
    machine_cache.store(_store(cache_dir))
    assert _mode(cache_dir / NAME) == 0o600
    assert machine_cache._read_entry(str(cache_dir), NAME) == EXPECTED
    assert os.listdir(cache_dir) == [NAME]


def test_store_creates_the_directory_0700(tmp_path: Path) -> None:
    directory = tmp_path / "msi-credential-0"
    machine_cache.store(_store(directory))
    assert _mode(directory) == 0o700
    assert machine_cache._read_entry(str(directory), NAME) == EXPECTED


def test_store_in_a_refused_directory_writes_nothing(cache_dir: Path) -> None:
    os.chmod(cache_dir, 0o750)
    machine_cache.store(_store(cache_dir))
    assert os.listdir(cache_dir) == []


def test_store_when_not_available_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_cache, "fcntl", None)
    machine_cache.store(_store(tmp_path / "msi-credential-0"))
    assert not (tmp_path / "msi-credential-0").exists()


def test_store_writes_a_hidden_temporary_file_in_the_directory_then_renames_it(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no-such-tempdir"))  # only dir= may be used
    seen: list[tuple[str, str, list[str]]] = []
    real_replace = os.replace

    def spy_replace(source: Any, target: Any) -> None:
        seen.append((str(source), str(target), sorted(os.listdir(cache_dir))))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", spy_replace)
    machine_cache.store(_store(cache_dir))
    assert len(seen) == 1
    source, target, listing = seen[0]
    assert os.path.dirname(source) == str(cache_dir)
    assert os.path.basename(source).startswith(".tmp-")
    assert listing == [os.path.basename(source)]
    assert target == str(cache_dir / NAME)
    assert os.listdir(cache_dir) == [NAME]


def test_store_when_the_temporary_file_cannot_be_made_writes_nothing(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", failing_mkstemp)
    assert machine_cache.store(_store(cache_dir)) is None
    assert os.listdir(cache_dir) == []


# change: a store whose temporary file cannot be made still sweeps the directory
def test_store_that_cannot_make_its_temporary_file_sweeps_nothing(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / OTHER, _body(name=OTHER, expires_on=900))  # expired at NOW

    def failing_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "mkstemp", failing_mkstemp)
    machine_cache.store(MachineStore(str(cache_dir), NAME, EXPECTED, NOW))
    assert os.listdir(cache_dir) == [OTHER]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_store_that_fails_midway_keeps_the_old_entry_and_removes_the_temporary_file(
    failing: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = _write(cache_dir / NAME, _body(token="old"))

    def fail(*args: Any) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, failing, fail)
    assert machine_cache.store(_store(cache_dir)) is None
    assert os.listdir(cache_dir) == [NAME]
    assert json.loads(old.read_bytes())["token"] == "old"


def test_store_whose_rename_fails_after_the_temporary_file_vanished_is_silent(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    removed: list[str] = []

    def replace_that_loses_the_file(source: Any, target: Any) -> None:
        os.unlink(source)
        removed.append(str(source))
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")

    monkeypatch.setattr(os, "replace", replace_that_loses_the_file)
    assert machine_cache.store(_store(cache_dir)) is None
    assert len(removed) == 1 and os.listdir(cache_dir) == []


# ------------------------------------------------------------------------------------------------------ perform


def test_perform_runs_a_lookup_and_returns_what_it_found(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / NAME, _body())
    held: list[int] = []
    assert machine_cache.perform(_lookup(cache_dir, now=1100.0), held) == MachineFound(entry=EXPECTED)
    _inject(monkeypatch, _Clock(3.0))
    assert machine_cache.perform(_lookup(cache_dir, name=OTHER), held) == MachineFound(locked=True)
    assert len(held) == 1 and machine_cache._held == set(held)


def test_perform_runs_a_store_and_returns_none(cache_dir: Path) -> None:
    held: list[int] = []
    assert machine_cache.perform(_store(cache_dir, name=OTHER), held) is None
    assert held == []
    assert machine_cache._read_entry(str(cache_dir), OTHER) == EXPECTED


# ------------------------------------------------------------------------------------------- throttle notes

THROTTLE = "ef" * 32 + ".throttle"


def test_a_throttle_note_is_written_private_and_comes_back_with_the_lookup(cache_dir: Path) -> None:
    machine_cache.perform(MachineThrottle(str(cache_dir), THROTTLE, 1234.5), [])
    held: list[int] = []
    found = machine_cache.lookup(MachineLookup(str(cache_dir), NAME, NOW, 1.0, THROTTLE), held)

    assert found.throttled_until == 1234.5 and found.locked
    assert _mode(cache_dir / THROTTLE) == 0o600
    assert json.loads((cache_dir / THROTTLE).read_text()) == {"v": 1, "name": THROTTLE, "until": 1234.5}
    machine_cache.release_all(held)


def test_a_throttle_note_keeps_the_later_time(cache_dir: Path) -> None:
    machine_cache.note_throttle(MachineThrottle(str(cache_dir), THROTTLE, 2000.0))
    machine_cache.note_throttle(MachineThrottle(str(cache_dir), THROTTLE, 1500.0))

    assert json.loads((cache_dir / THROTTLE).read_text())["until"] == 2000.0


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        json.dumps({"v": 1, "name": "another", "until": 2000.0}).encode(),
        json.dumps({"v": 1, "name": THROTTLE, "until": "2000"}).encode(),
        json.dumps({"v": 1, "name": THROTTLE, "until": True}).encode(),
        json.dumps([THROTTLE]).encode(),
    ],
)
def test_a_throttle_note_that_is_not_well_formed_holds_nothing(cache_dir: Path, body: bytes) -> None:
    _write(cache_dir / THROTTLE, body)
    held: list[int] = []
    found = machine_cache.lookup(MachineLookup(str(cache_dir), NAME, NOW, 1.0, THROTTLE), held)
    machine_cache.release_all(held)

    assert found.throttled_until == 0.0


def test_a_throttle_note_others_could_have_written_holds_nothing(cache_dir: Path) -> None:
    _write(cache_dir / THROTTLE, json.dumps({"v": 1, "name": THROTTLE, "until": 2000.0}).encode())
    os.chmod(cache_dir / THROTTLE, 0o666)
    held: list[int] = []
    found = machine_cache.lookup(MachineLookup(str(cache_dir), NAME, NOW, 1.0, THROTTLE), held)
    machine_cache.release_all(held)

    assert found.throttled_until == 0.0


def _note(until: float = 2000.0) -> bytes:
    return json.dumps({"v": 1, "name": THROTTLE, "until": until}).encode()


# change: a lookup without a throttle note reports a throttle until 1.0
def test_a_lookup_without_a_throttle_note_is_not_throttled(cache_dir: Path) -> None:
    held: list[int] = []
    found = machine_cache.lookup(MachineLookup(str(cache_dir), NAME, NOW, 1.0, THROTTLE), held)
    machine_cache.release_all(held)

    assert found == MachineFound(locked=True)
    assert not (cache_dir / THROTTLE).exists()


# change: the fresh entry found beside a throttle note is dropped
def test_a_lookup_returns_a_fresh_entry_with_the_throttle_note(cache_dir: Path) -> None:
    _write(cache_dir / NAME, _body())
    _write(cache_dir / THROTTLE, _note(1234.5))

    found = machine_cache.lookup(MachineLookup(str(cache_dir), NAME, 1100.0, 1.0, THROTTLE), [])

    assert found == MachineFound(entry=EXPECTED, throttled_until=1234.5)


# change: the note is opened without O_NOFOLLOW, so a link to a note elsewhere is read
def test_a_throttle_note_that_is_a_symlink_is_not_followed(tmp_path: Path, cache_dir: Path) -> None:
    target = _write(tmp_path / "elsewhere", _note())
    (cache_dir / THROTTLE).symlink_to(target)

    assert machine_cache._read_throttle(str(cache_dir), THROTTLE) == 0.0


# change: the note is opened without O_NONBLOCK, so a FIFO in its place blocks the reader until a writer comes
def test_a_throttle_note_that_is_a_fifo_is_opened_without_blocking_and_ignored(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fifo_that_must_not_block(cache_dir / THROTTLE, monkeypatch)
    assert machine_cache._read_throttle(str(cache_dir), THROTTLE) == 0.0


# change: a note that fails to read counts as a throttle until 1.0
def test_a_throttle_note_that_fails_to_read_holds_nothing_and_is_closed(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(cache_dir / THROTTLE, _note())
    opened = _opens_with_failing_reads(monkeypatch)
    assert machine_cache._read_throttle(str(cache_dir), THROTTLE) == 0.0
    assert len(opened) == 1 and not _is_open(opened[0])


# change: the note is read up to 1025 bytes instead of 1024
def test_a_throttle_note_of_1024_bytes_is_read_and_one_byte_more_is_not(cache_dir: Path) -> None:
    note = _note()  # led by spaces, so that a read cut short ends inside the JSON
    _write(cache_dir / THROTTLE, b" " * (1024 - len(note)) + note)
    assert machine_cache._read_throttle(str(cache_dir), THROTTLE) == 2000.0

    _write(cache_dir / THROTTLE, b" " * (1025 - len(note)) + note)
    assert machine_cache._read_throttle(str(cache_dir), THROTTLE) == 0.0


# change: a note is written where the machine cache is unavailable or its directory refused
@pytest.mark.parametrize("where", ["unavailable", "refused"])
def test_a_throttle_note_is_not_written_where_the_machine_cache_cannot_be_used(
    where: str, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "unavailable":
        monkeypatch.setattr(machine_cache, "fcntl", None)
    else:
        os.chmod(cache_dir, 0o750)

    machine_cache.note_throttle(MachineThrottle(str(cache_dir), THROTTLE, 2000.0))

    assert os.listdir(cache_dir) == []


# change: a note of the time already noted is written again
def test_a_throttle_note_of_the_time_already_noted_is_not_rewritten(cache_dir: Path) -> None:
    machine_cache.note_throttle(MachineThrottle(str(cache_dir), THROTTLE, 2000.0))
    first = os.stat(cache_dir / THROTTLE).st_ino

    machine_cache.note_throttle(MachineThrottle(str(cache_dir), THROTTLE, 2000.0))

    assert os.stat(cache_dir / THROTTLE).st_ino == first


# ===============================================================================================================
# machine_cache=True through the credential, with real processes: tokens shared by one user's processes on this
# machine (the worker is tests/machine_cache_worker.py).

WORKER = str(Path(__file__).parent.parent / "machine_cache_worker.py")
STORAGE_RESOURCE = "https://storage.azure.com"
VAULT_RESOURCE = "https://vault.azure.net"
BOUND = 60.0  # seconds any child may take in all: a hang fails the test instead of stalling it


def _runtime_dir(tmp_path: Path) -> Path:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    return runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    """An XDG_RUNTIME_DIR private to this user (0700), under tmp_path."""
    return _runtime_dir(tmp_path)


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
    children = _start(_child_env(emulator, _runtime_dir(tmp_path)), [STORAGE_RESOURCE, VAULT_RESOURCE], 32)
    _go(children)
    results = _results(children)
    assert len(_token_requests(emulator)) == 2
    assert len({tuple(r["tokens"]) for r in results}) == 1


def test_without_the_option_each_process_asks(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    env = _child_env(emulator, _runtime_dir(tmp_path), MSI_CREDENTIAL_MACHINE_CACHE="0")
    children = _start(env, [STORAGE_RESOURCE], 3)
    _go(children)
    _results(children)
    assert len(_token_requests(emulator)) == 3


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
def test_a_holder_killed_mid_request_does_not_block_the_others(emulator_factory: Any, tmp_path: Path) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, delay=BOUND * 2))  # the holder's request hangs until it is killed
    env = _child_env(emulator, _runtime_dir(tmp_path))
    holder = _start(env, [STORAGE_RESOURCE], 1)[0]
    others = _start(env, [STORAGE_RESOURCE], 4)
    _go([holder])
    assert holder.stdout is not None

    wait_for(lambda: len(_token_requests(emulator)) == 1, "the holder's request to reach the emulator")
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
    holder = _start(env, [STORAGE_RESOURCE], 1)[0]

    try:
        _go([holder])
        wait_for(lambda: len(_token_requests(emulator)) == 1, "the holder's request to reach the emulator")
        credential = ManagedIdentityCredential(
            _environ=env, machine_cache=True, _machine_cache_wait=0.2, share_cache=False
        )
        assert credential.get_token(STORAGE_RESOURCE + "/.default").token
        assert len(_token_requests(emulator)) == 2  # it stopped waiting and asked itself
    finally:
        holder.kill()
        holder.wait(timeout=BOUND)


def _credential(emulator: Any, runtime: Path, **kwargs: Any) -> ManagedIdentityCredential:
    env = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    return ManagedIdentityCredential(_environ=env, machine_cache=True, share_cache=False, **kwargs)


def test_a_second_credential_reads_the_first_ones_token_from_the_machine_cache(
    emulator_factory: Any, runtime: Path
) -> None:
    emulator = emulator_factory("app_service")
    first = _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token
    second = _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token
    assert first == second
    assert len(_token_requests(emulator)) == 1
    entries = [p for p in (runtime / "msi-credential").iterdir() if not p.name.endswith(".lock")]
    assert len(entries) == 1
    assert (entries[0].stat().st_mode & 0o777) == 0o600
    assert ((runtime / "msi-credential").stat().st_mode & 0o777) == 0o700
    assert STORAGE_RESOURCE not in entries[0].name and "storage" not in entries[0].name


def test_two_identities_never_see_each_others_tokens(emulator_factory: Any, runtime: Path) -> None:
    a = UserAssignedIdentity(
        client_id="11111111-1111-1111-1111-111111111111", object_id="a", resource_id="/identities/a"
    )
    b = UserAssignedIdentity(
        client_id="22222222-2222-2222-2222-222222222222", object_id="b", resource_id="/identities/b"
    )
    emulator = emulator_factory("app_service", identities=[a, b])
    system = _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token
    first = _credential(emulator, runtime, client_id=a.client_id).get_token(STORAGE_RESOURCE).token
    second = _credential(emulator, runtime, client_id=b.client_id).get_token(STORAGE_RESOURCE).token
    assert len({system, first, second}) == 3
    assert len(_token_requests(emulator)) == 3
    again = _credential(emulator, runtime, client_id=a.client_id).get_token(STORAGE_RESOURCE).token
    assert again == first


def test_a_corrupt_or_foreign_entry_is_ignored_and_replaced(emulator_factory: Any, runtime: Path) -> None:
    emulator = emulator_factory("app_service")
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    directory = runtime / "msi-credential"
    entry = next(p for p in directory.iterdir() if not p.name.endswith(".lock"))
    for damage in (b'{"v": 1, "name": "', b"\x00garbage", b'{"v": 1, "name": "someone-else"}'):
        entry.write_bytes(damage)
        token = _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token
        assert json.loads(entry.read_text())["token"] == token  # replaced by the new request's token
    assert len(_token_requests(emulator)) == 4


def test_an_expired_entry_is_never_served(emulator_factory: Any, runtime: Path) -> None:
    emulator = emulator_factory("app_service")
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    entry = next(p for p in (runtime / "msi-credential").iterdir() if not p.name.endswith(".lock"))
    body = json.loads(entry.read_text())
    body.update(expires_on=1, refresh_on=0, mandatory_at=0)
    entry.write_text(json.dumps(body))
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    assert len(_token_requests(emulator)) == 2


def test_refused_resources_leave_no_lock_file_behind(emulator_factory: Any, runtime: Path) -> None:
    """Every resource asked takes a lock file while its request is in flight; its holder removes it when done,
    refused resources included, so the directory holds only the entries (40 refusals: 0 files, not 40)."""
    emulator = emulator_factory("app_service")
    emulator.script(*[Fault(400, {"error": "invalid_resource", "error_description": "no"})] * 40)
    credential = _credential(emulator, runtime)
    for number in range(40):
        with pytest.raises(ManagedIdentityError):
            credential.get_token(f"https://refused-{number}.example")
    credential.get_token(STORAGE_RESOURCE)

    [entry] = list((runtime / "msi-credential").iterdir())  # the one token; no lock file
    assert not entry.name.endswith(".lock")


def test_expired_entries_are_swept_when_a_token_is_stored(emulator_factory: Any, runtime: Path) -> None:
    emulator = emulator_factory("app_service")
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    [entry] = list((runtime / "msi-credential").iterdir())
    body = json.loads(entry.read_text())
    body.update(expires_on=1, refresh_on=0, mandatory_at=0)
    entry.write_text(json.dumps(body))

    _credential(emulator, runtime).get_token(VAULT_RESOURCE)

    names = [p.name for p in (runtime / "msi-credential").iterdir()]
    assert len(names) == 1 and entry.name not in names  # the vault token only: the expired one is gone


async def test_a_cancelled_async_call_leaves_no_machine_cache_lock_behind(
    emulator_factory: Any, runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cancelled while its executor thread waits for another process's lock (``asyncio.run`` ending after a
    ``wait_for`` timeout): once that process lets go, the thread must not take the lock and keep it until this
    process exits (every process would then wait on it)."""
    from msi_credential._transport import machine_cache

    emulator = emulator_factory("app_service")
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
    call = asyncio.ensure_future(credential.get_token(STORAGE_RESOURCE))
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
    emulator_factory: Any, runtime: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emulator = emulator_factory("app_service")
    (runtime / "msi-credential").mkdir(mode=0o700)
    os.chmod(runtime / "msi-credential", 0o755)
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
        _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    assert len(_token_requests(emulator)) == 2  # in-process only
    assert list((runtime / "msi-credential").iterdir()) == []
    assert "not owned by this user with mode 0700" in caplog.text


def test_an_xdg_runtime_dir_open_to_others_is_refused(emulator_factory: Any, runtime: Path) -> None:
    emulator = emulator_factory("app_service")
    os.chmod(runtime, 0o777)
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    assert not (runtime / "msi-credential").exists()


def test_an_entry_readable_by_others_is_not_trusted_and_replaced(
    emulator_factory: Any, runtime: Path
) -> None:
    emulator = emulator_factory("app_service")
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    entry = next(p for p in (runtime / "msi-credential").iterdir() if not p.name.endswith(".lock"))
    os.chmod(entry, 0o644)
    token = _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token
    assert len(_token_requests(emulator)) == 2
    assert (entry.stat().st_mode & 0o777) == 0o600
    assert json.loads(entry.read_text())["token"] == token


def test_a_link_instead_of_the_directory_is_refused(
    emulator_factory: Any, tmp_path: Path, runtime: Path
) -> None:
    emulator = emulator_factory("app_service")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (runtime / "msi-credential").symlink_to(elsewhere)
    _credential(emulator, runtime).get_token(STORAGE_RESOURCE)
    assert list(elsewhere.iterdir()) == []


def test_claims_bypass_the_machine_cache_and_store_the_new_token(
    emulator_factory: Any, runtime: Path
) -> None:
    emulator = emulator_factory("app_service")
    old = _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token
    new = _credential(emulator, runtime).get_token(STORAGE_RESOURCE, claims='{"access_token":{}}').token
    assert new != old
    assert _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token == new


@pytest.mark.parametrize("source", ["service_fabric", "workload_identity"])
def test_not_used_for_service_fabric_or_workload_identity(
    emulator_factory: Any, runtime: Path, source: str
) -> None:
    emulator = emulator_factory(source)
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


async def test_the_async_face_shares_through_the_machine_cache(emulator_factory: Any, runtime: Path) -> None:
    emulator = emulator_factory("app_service")
    env = dict(emulator.environ, XDG_RUNTIME_DIR=str(runtime))
    async with AsyncCredential(_environ=env, machine_cache=True, share_cache=False) as credential:
        first = (await credential.get_token(STORAGE_RESOURCE)).token
    assert _credential(emulator, runtime).get_token(STORAGE_RESOURCE).token == first
    assert len(_token_requests(emulator)) == 1


def test_a_process_holding_the_token_in_memory_never_touches_the_machine_cache(
    emulator_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from msi_credential._transport import machine_cache

    emulator = emulator_factory("app_service")
    credential = _credential(emulator, _runtime_dir(tmp_path))
    first = credential.get_token(STORAGE_RESOURCE).token

    def refuse(*args: Any) -> None:
        raise AssertionError("the machine cache was consulted on a cache hit")

    monkeypatch.setattr(machine_cache, "perform", refuse)
    assert credential.get_token(STORAGE_RESOURCE).token == first
    assert credential.get_token_info(STORAGE_RESOURCE + "/.default").token == first
