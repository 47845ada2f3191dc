"""The machine cache's file work (``machine_cache=True``): tokens shared by one user's processes on this machine.

Performed by the drivers for the engine's MachineLookup / MachineStore effects (the async driver runs them in an
executor). Safety rules, all checked here on every use:

- the directory is ``$XDG_RUNTIME_DIR/msi-credential`` when XDG_RUNTIME_DIR is set, else
  ``<tempdir>/msi-credential-<uid>``; it is created 0700; a directory (or XDG_RUNTIME_DIR itself) that is a link,
  not owned by this user, or open to the group or others is refused: a warning, and the credential keeps to its
  in-process cache;
- an entry or lock file not owned by this user, or readable by others, is never trusted (warning); an entry that is
  corrupt, truncated, too large or written for another key is ignored, and replaced by the next store;
- writes go to a temporary file in the same directory, fsync, rename: a reader sees the old entry or the new one;
- a 429's Retry-After is a note of its own, ``<sha256 of the endpoint>.throttle`` (the time, nothing secret), read
  with each lookup under the same rules as an entry;
- the lock is ``fcntl.flock`` on ``<name>.lock``: the kernel releases it when its holder dies, so a killed process
  stalls nobody; a waiter gives up after the engine's bound and asks the endpoint itself;
- the directory stays bounded: a holder removes its lock file while still holding it, and whoever locks a file
  checks afterwards that the path still names it (else locks the new one), so no two processes ever hold "the" lock;
  every store sweeps the entries that have expired (each under its own lock, never waiting for it);
- a lock taken by a flow that has already ended (an async call cancelled while its executor thread waited) is
  released at once (``Holdings``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
import time
from typing import Optional

from .._engine.effects import (
    MachineEffect,
    MachineEntry,
    MachineFound,
    MachineLookup,
    MachineStore,
    MachineThrottle,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: the engine never yields machine effects there
    fcntl = None  # type: ignore[assignment]

_LOGGER = logging.getLogger("msi_credential")
_MAX_ENTRY_BYTES = 64 * 1024
_POLL = 0.01
_STALE_TEMPORARY = 3600.0  # seconds: a temporary file this old is a crashed writer's, not a write in progress
_warned: set[str] = set()
_warned_lock = threading.Lock()
# Lock files this process holds (descriptors): a forked child closes its copies (the parent keeps the lock).
_held: set[int] = set()
# The lock file each held descriptor locked, removed when it is released (no lock file outlives its use).
_locked_paths: dict[int, str] = {}


def available() -> bool:
    return fcntl is not None and hasattr(os, "geteuid")


def default_directory(environ: dict[str, str]) -> str:
    """Where the machine cache lives for this environment (not yet checked or created)."""
    runtime = environ.get("XDG_RUNTIME_DIR", "").strip()
    if runtime:
        return os.path.join(runtime, "msi-credential")
    return os.path.join(tempfile.gettempdir(), f"msi-credential-{os.geteuid()}")


def _warn(what: str, message: str) -> None:
    with _warned_lock:
        if what in _warned:
            return
        _warned.add(what)
    _LOGGER.warning("machine cache: %s; using the in-process cache only", message)


def _private(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & 0o077


def _checked_directory(directory: str) -> bool:
    """Create the directory 0700 if missing; True when it (and XDG_RUNTIME_DIR above it) is ours and private."""
    parent = os.path.dirname(directory)
    if os.path.basename(directory) == "msi-credential":  # under XDG_RUNTIME_DIR: that must be private too
        try:
            above = os.lstat(parent)
        except OSError:
            _warn(parent, f"{parent} (XDG_RUNTIME_DIR) does not exist")
            return False
        if not stat.S_ISDIR(above.st_mode) or not _private(above):
            _warn(parent, f"{parent} (XDG_RUNTIME_DIR) is not a directory private to this user")
            return False
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except OSError as error:
        _warn(directory, f"cannot create {directory}: {error.strerror}")
        return False
    try:
        info = os.lstat(directory)
    except OSError as error:
        _warn(directory, f"cannot stat {directory}: {error.strerror}")
        return False
    if not stat.S_ISDIR(info.st_mode):
        _warn(directory, f"{directory} is not a directory (a link or a file is refused)")
        return False
    if not _private(info):
        _warn(directory, f"{directory} is not owned by this user with mode 0700 (refused)")
        return False
    return True


def _read_entry(directory: str, name: str) -> Optional[MachineEntry]:
    path = os.path.join(directory, name)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            return None
        if not _private(info):
            _warn(path, f"{path} is not owned by this user with mode 0600: not trusted, will be replaced")
            return None
        data = os.read(descriptor, _MAX_ENTRY_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(descriptor)
    if len(data) > _MAX_ENTRY_BYTES:
        return None
    try:
        body = json.loads(data.decode("utf-8"))
        if not isinstance(body, dict) or body.get("v") != 1 or body.get("name") != name:
            return None  # another format, or a file copied from another key: foreign
        token, token_type = body["token"], body["token_type"]
        expires_on, info_refresh_on = body["expires_on"], body["info_refresh_on"]
        refresh_on, mandatory_at = body["refresh_on"], body["mandatory_at"]
        if not isinstance(token, str) or not token or not isinstance(token_type, str):
            return None
        if isinstance(expires_on, bool) or not isinstance(expires_on, int):
            return None
        if info_refresh_on is not None and (
            isinstance(info_refresh_on, bool) or not isinstance(info_refresh_on, int)
        ):
            return None
        if not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in (refresh_on, mandatory_at)
        ):
            return None
        return MachineEntry(
            token=token,
            expires_on=expires_on,
            refresh_on=float(refresh_on),
            mandatory_at=float(mandatory_at),
            token_type=token_type,
            info_refresh_on=info_refresh_on,
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return None


def _fresh(entry: Optional[MachineEntry], now: float) -> bool:
    return entry is not None and now < entry.refresh_on and now < entry.expires_on


def _open_lock(directory: str, name: str) -> Optional[int]:
    path = os.path.join(directory, name + ".lock")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags, 0o600)
    except OSError:
        return None
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode) or not _private(info):
        os.close(descriptor)
        _warn(path, f"{path} is not owned by this user with mode 0600 (refused)")
        return None
    return descriptor


class Holdings(list):  # type: ignore[type-arg]
    """The machine cache locks one flow holds (descriptors), released when the flow ends, however it ends.

    An async flow's lookup runs in an executor thread that a cancelled caller does not stop: once the flow has
    ended (``release_all``) the holdings are closed, and a lock that thread takes afterwards is released at once,
    and its wait given up, instead of being kept until the process exits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.guard = threading.Lock()
        self.closed = False


def _keep(held: list[int], descriptor: int) -> bool:
    """Record a lock the flow now holds; False (and the lock released) when its flow has already ended."""
    if isinstance(held, Holdings):
        with held.guard:
            if not held.closed:
                _held.add(descriptor)
                held.append(descriptor)
                return True
        release(descriptor)
        return False
    _held.add(descriptor)
    held.append(descriptor)
    return True


def _abandoned(held: list[int]) -> bool:
    return isinstance(held, Holdings) and held.closed


def _still_linked(descriptor: int, path: str) -> bool:
    """True when ``path`` is still the file this descriptor locked: a holder removes its lock file (while holding
    it) when done, so a waiter that then gets the lock on the removed file must lock the new one instead."""
    try:
        here, there = os.fstat(descriptor), os.lstat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def lookup(effect: MachineLookup, held: list[int]) -> MachineFound:
    """The fresh entry, else the lock (appended to ``held``) and whatever the previous holder stored; with the
    endpoint's throttle note when one is asked for and noted."""
    if not available() or not _checked_directory(effect.directory):
        return MachineFound()
    until = _read_throttle(effect.directory, effect.throttle) if effect.throttle is not None else 0.0
    found = _lookup(effect, held)
    return MachineFound(entry=found.entry, locked=found.locked, throttled_until=until) if until else found


def _lookup(effect: MachineLookup, held: list[int]) -> MachineFound:
    entry = _read_entry(effect.directory, effect.name)
    if _fresh(entry, effect.now):
        return MachineFound(entry=entry)
    path = os.path.join(effect.directory, effect.name + ".lock")
    began = time.monotonic()
    waiter = threading.Event()
    while True:
        descriptor = _open_lock(effect.directory, effect.name)
        if descriptor is None:
            return MachineFound()
        if not _wait_for_lock(descriptor, effect, began, waiter, held):
            return MachineFound()
        if _still_linked(descriptor, path):
            break
        os.close(descriptor)  # the lock file we waited on was removed by its holder: lock the current one
    _locked_paths[descriptor] = path
    entry = _read_entry(effect.directory, effect.name)
    now = effect.now + (time.monotonic() - began)
    if _fresh(entry, now):
        release(descriptor)
        return MachineFound(entry=entry)
    if not _keep(held, descriptor):
        return MachineFound()
    return MachineFound(locked=True)


def _wait_for_lock(
    descriptor: int, effect: MachineLookup, began: float, waiter: threading.Event, held: list[int]
) -> bool:
    """flock the descriptor, polling up to the effect's bound; False (the descriptor closed) on giving up."""
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            waited = time.monotonic() - began
            if _abandoned(held):
                os.close(descriptor)  # the flow that asked has ended (a cancelled async call)
                return False
            if waited >= effect.wait:
                os.close(descriptor)
                _LOGGER.info(
                    "machine cache: another process held the token request for %.1f s; asking too", waited
                )
                return False
            waiter.wait(_POLL)  # a bounded poll: flock has no timeout
        except OSError:
            os.close(descriptor)
            return False


def release(descriptor: int, *, remove: bool = True) -> None:
    """Drop a lock: its file is removed first (while still held, so no other process is locking it unseen),
    then the descriptor closed. A forked child's copy (``remove=False``) only closes: the parent holds it."""
    _held.discard(descriptor)
    path = _locked_paths.pop(descriptor, None)
    if remove and path is not None and _still_linked(descriptor, path):
        with contextlib.suppress(OSError):
            os.unlink(path)
    with contextlib.suppress(OSError):
        os.close(descriptor)  # closing the only descriptor drops the flock


def store(effect: MachineStore) -> None:
    """Write the entry crash-safely: a temporary file beside it, fsync, rename over the old one."""
    if not available() or not _checked_directory(effect.directory):
        return
    entry = effect.entry
    body = json.dumps(
        {
            "v": 1,
            "name": effect.name,
            "token": entry.token,
            "token_type": entry.token_type,
            "expires_on": entry.expires_on,
            "info_refresh_on": entry.info_refresh_on,
            "refresh_on": entry.refresh_on,
            "mandatory_at": entry.mandatory_at,
        }
    )
    if _write(effect.directory, effect.name, body) and effect.now is not None:
        sweep(effect.directory, effect.now)


def _write(directory: str, name: str, text: str) -> bool:
    """A temporary file beside the target, fsync, rename over it; False when not even the temporary file could be
    made."""
    body = text.encode("utf-8")
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=directory)  # 0600
    except OSError:
        return False
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(body)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, os.path.join(directory, name))
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return True


def sweep(directory: str, now: float) -> int:
    """Remove the entries that expired before ``now`` (each under its own lock, taken without waiting: an entry
    another process is renewing is left to it) and temporary files a crashed writer left; returns how many."""
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        path = os.path.join(directory, name)
        if name.startswith(".tmp-"):
            removed += _remove_stale_temporary(path)
        elif not name.startswith(".") and not name.endswith(".lock"):
            removed += _remove_if_expired(directory, name, now)
    return removed


def _remove_if_expired(directory: str, name: str, now: float) -> int:
    entry = _read_entry(directory, name)
    if entry is None or entry.expires_on > now:
        return 0  # fresh, or not ours to judge (foreign or corrupt: the next store replaces it)
    descriptor = _open_lock(directory, name)
    if descriptor is None:
        return 0
    path = os.path.join(directory, name + ".lock")
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)  # held: its holder is renewing it
        return 0
    _locked_paths[descriptor] = path
    removed = 0
    try:
        if _still_linked(descriptor, path):
            entry = _read_entry(directory, name)
            if entry is not None and entry.expires_on <= now:
                os.unlink(os.path.join(directory, name))
                removed = 1
    except OSError:
        pass
    finally:
        release(descriptor)
    return removed


def _remove_stale_temporary(path: str) -> int:
    try:
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or time.time() - info.st_mtime < _STALE_TEMPORARY:
            return 0
        os.unlink(path)
    except OSError:
        return 0
    return 1


def _read_throttle(directory: str, name: str) -> float:
    """The time in the endpoint's throttle note, or 0.0 (none, or not one this user alone could have written)."""
    path = os.path.join(directory, name)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError:
        return 0.0
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode) or not _private(info):
            return 0.0
        data = os.read(descriptor, 1024)
    except OSError:
        return 0.0
    finally:
        os.close(descriptor)
    try:
        body = json.loads(data.decode("utf-8"))
        until = body["until"] if isinstance(body, dict) and body.get("name") == name else None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return 0.0
    if isinstance(until, bool) or not isinstance(until, (int, float)) or until != until:
        return 0.0
    return float(until)


def note_throttle(effect: MachineThrottle) -> None:
    """Write the endpoint's throttle note (same crash-safe write as an entry), unless a later time is noted."""
    if not available() or not _checked_directory(effect.directory):
        return
    if _read_throttle(effect.directory, effect.name) >= effect.until:
        return
    _write(effect.directory, effect.name, json.dumps({"v": 1, "name": effect.name, "until": effect.until}))


def perform(effect: MachineEffect, held: list[int]) -> Optional[MachineFound]:
    if isinstance(effect, MachineLookup):
        return lookup(effect, held)
    if isinstance(effect, MachineThrottle):
        note_throttle(effect)
        return None
    store(effect)
    return None


def release_all(held: list[int]) -> None:
    if isinstance(held, Holdings):
        with held.guard:
            held.closed = True
    while held:
        release(held.pop())


def _after_fork_in_child() -> None:
    for descriptor in list(_held):
        release(descriptor, remove=False)  # the child's copy only: the parent still holds the lock


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
