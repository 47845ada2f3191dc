"""Local file reads the engine asks for (Arc key file, federated token file). Shared by both drivers."""

from __future__ import annotations

import os
import stat
import sys
from typing import Optional

from .._engine.effects import (
    MAX_KEY_FILE_BYTES,
    FileRead,
    KeyFileResult,
    ReadKeyFile,
    ReadProxyCA,
)

_HINT = (
    " (on Windows the process must be in the 'Hybrid agent extension applications' group)"
    if sys.platform.startswith("win")
    else " (on Linux the process must be in the 'himds' group)"
)
_MAX_ASSERTION_BYTES = 64 * 1024
_MAX_CA_BYTES = 1024 * 1024


def read_file(effect: FileRead) -> KeyFileResult:
    """Perform a file effect of the engine: the same for both drivers (small local reads; the async driver runs
    them in an executor thread)."""
    if isinstance(effect, ReadKeyFile):
        return read_key_file(effect.path)
    if isinstance(effect, ReadProxyCA):
        return read_proxy_ca(effect.path)
    return read_assertion(effect.path)


def read_proxy_ca(path: str) -> KeyFileResult:
    """AZURE_KUBERNETES_CA_FILE's text (links followed: the cluster swaps them to rotate it). Empty is returned
    as empty content: mid-rotation, the engine keeps the previous CA."""
    code = "invalid_token_proxy_ca"
    try:
        data = _read_regular_file(path, _MAX_CA_BYTES + 1, follow_links=True)
    except _NotRegular:
        return KeyFileResult(error=(code, "AZURE_KUBERNETES_CA_FILE is not a regular file"))
    except OSError as error:
        return KeyFileResult(error=(code, f"cannot read AZURE_KUBERNETES_CA_FILE: {error.strerror}"))
    if len(data) > _MAX_CA_BYTES:
        return KeyFileResult(error=(code, "AZURE_KUBERNETES_CA_FILE is over 1 MiB"))
    try:
        return KeyFileResult(content=data.decode("utf-8").strip())
    except UnicodeDecodeError:
        return KeyFileResult(error=(code, "AZURE_KUBERNETES_CA_FILE is not text (PEM)"))


def read_key_file(path: str) -> KeyFileResult:
    """Stat without following links, check it is a small regular file, then read at most 4097 bytes."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return KeyFileResult(error=("arc_key_file_unreadable", "the challenge's key file does not exist"))
    except OSError as error:
        return KeyFileResult(
            error=("arc_key_file_unreadable", f"cannot stat the key file: {error.strerror}{_HINT}")
        )
    if not stat.S_ISREG(info.st_mode):
        return KeyFileResult(error=("arc_invalid_key_file", "the key file is not a regular file"))
    if info.st_size == 0 or info.st_size > MAX_KEY_FILE_BYTES:
        return KeyFileResult(
            error=("arc_invalid_key_file", f"the key file is empty or over {MAX_KEY_FILE_BYTES} bytes")
        )
    try:
        data = _read_regular_file(path, MAX_KEY_FILE_BYTES + 1, follow_links=False, expected=info)
    except _NotRegular:
        return KeyFileResult(error=("arc_invalid_key_file", "the key file is not a regular file"))
    except OSError as error:
        return KeyFileResult(
            error=("arc_key_file_unreadable", f"cannot read the key file: {error.strerror}{_HINT}")
        )
    if len(data) > MAX_KEY_FILE_BYTES:
        return KeyFileResult(error=("arc_invalid_key_file", "the key file grew over 4096 bytes"))
    try:
        content = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return KeyFileResult(error=("arc_invalid_key_file", "the key file is not text"))
    if not content:
        return KeyFileResult(error=("arc_invalid_key_file", "the key file is empty"))
    if not all(" " <= ch <= "~" for ch in content):
        # the agent's keys are ASCII; anything else would be encoded differently by each HTTP stack
        return KeyFileResult(
            error=("arc_invalid_key_file", "the key file holds control or non-ASCII characters")
        )
    return KeyFileResult(content=content)


def read_assertion(path: str) -> KeyFileResult:
    """The federated token file's contents, stripped; read for every token request (the file rotates)."""
    code = "federated_token_file_unreadable"
    try:
        # links followed: Kubernetes projects the token through symlinks that it swaps to rotate it
        data = _read_regular_file(path, _MAX_ASSERTION_BYTES + 1, follow_links=True)
    except _NotRegular:
        return KeyFileResult(error=(code, "AZURE_FEDERATED_TOKEN_FILE is not a regular file"))
    except OSError as error:
        return KeyFileResult(error=(code, f"cannot read AZURE_FEDERATED_TOKEN_FILE: {error.strerror}"))
    if len(data) > _MAX_ASSERTION_BYTES:
        return KeyFileResult(error=(code, "AZURE_FEDERATED_TOKEN_FILE is too large"))
    try:
        content = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return KeyFileResult(error=(code, "AZURE_FEDERATED_TOKEN_FILE is not text"))
    if not content:
        return KeyFileResult(error=(code, "AZURE_FEDERATED_TOKEN_FILE is empty"))
    return KeyFileResult(content=content)


class _NotRegular(Exception):
    """What was opened is not the regular file that was checked (a FIFO, a device, a swapped file)."""


def _read_regular_file(
    path: str, limit: int, *, follow_links: bool, expected: Optional[os.stat_result] = None
) -> bytes:
    """Open without blocking (a FIFO would wait for a writer forever) and, for the key file, without following
    links; then check what was opened, by its descriptor, before reading at most ``limit`` bytes."""
    nonblocking = getattr(os, "O_NONBLOCK", 0)  # POSIX only: Windows has neither O_NONBLOCK nor FIFOs on disk
    flags = os.O_RDONLY | nonblocking | getattr(os, "O_BINARY", 0)
    if not follow_links:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(path, flags)
    try:
        opened = os.fstat(descriptor)
        if not stat.S_ISREG(opened.st_mode):
            raise _NotRegular
        if expected is not None and (opened.st_dev, opened.st_ino) != (expected.st_dev, expected.st_ino):
            raise _NotRegular  # swapped between the check and the open
        if nonblocking:
            # undo O_NONBLOCK for the read; only then: Windows' set_blocking (3.12+) works on pipes only and
            # raises for a regular file
            os.set_blocking(descriptor, True)
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            chunk = os.read(descriptor, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(descriptor)
