"""The local file reads of `_transport/files.py`, rule by rule.

Each error is checked whole (its code and its message word for word: the message is what a person reads to fix a
deployment), each size limit at the limit and one byte over, and each refusal (links, FIFOs, directories, a file
swapped or grown between the check and the read) as the code makes it. The readers are called directly on files
under tmp_path: no sockets, no threads, no subprocesses, no sleeps, so this file serves the mutation run of
docs/mutation.md. Where only a race or a kernel's short read could show a rule, `files.os` is replaced by the real
module with one function wrapped (`_patch_os`). Every open and read in this file goes through guards that fail, rather
than hang, on a FIFO opened without O_NONBLOCK and on a read loop that goes on past the end of the file.

The section "the credential's reads, through both faces" is the exception: an Azure Arc key file that is a FIFO,
met by the credential through both faces (the ``face`` fixture) against a loopback server, must be refused without
blocking the call.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from msi_credential import ManagedIdentityError
from msi_credential._engine.effects import (
    MAX_KEY_FILE_BYTES,
    KeyFileResult,
    ReadAssertion,
    ReadKeyFile,
    ReadProxyCA,
)
from msi_credential._transport import files

from .support import SCOPE, arc_challenge_server, arc_environ

pytestmark = pytest.mark.skipif(
    sys.platform.startswith("win"), reason="links, FIFOs and O_NOFOLLOW are checked as Linux has them"
)

HINT = " (on Linux the process must be in the 'himds' group)"
ASSERTION_LIMIT = 64 * 1024
CA_LIMIT = 1024 * 1024
KEY = "k" * 32


class _Os:
    """The os module as files.py sees it: the real one, with the functions given replaced."""

    def __init__(self, **replaced: Callable[..., Any]) -> None:
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)


_AT_END: set[int] = set()  # descriptors whose last read found the end of the file


def _open_refusing_to_block(path: Any, flags: int, *args: Any) -> int:
    try:
        is_fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        is_fifo = False
    if is_fifo and not flags & os.O_NONBLOCK:
        raise AssertionError("a FIFO opened without O_NONBLOCK would wait for a writer forever")
    descriptor = os.open(path, flags, *args)
    _AT_END.discard(descriptor)
    return descriptor


def _read_stopping_at_the_end(descriptor: int, count: int) -> bytes:
    if descriptor in _AT_END:
        raise AssertionError("read again after the end of the file: the loop would never end")
    chunk = os.read(descriptor, count)
    if count and not chunk:
        _AT_END.add(descriptor)
    return chunk


def _patch_os(monkeypatch: pytest.MonkeyPatch, **replaced: Callable[..., Any]) -> None:
    guards = {"open": _open_refusing_to_block, "read": _read_stopping_at_the_end}
    monkeypatch.setattr(files, "os", _Os(**{**guards, **replaced}))


@pytest.fixture(autouse=True)
def open_and_read_guards(monkeypatch: pytest.MonkeyPatch) -> None:
    _AT_END.clear()
    _patch_os(monkeypatch)


def _file(tmp_path: Path, data: bytes, name: str = "file") -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def _fifo(tmp_path: Path, name: str = "fifo") -> str:
    path = tmp_path / name
    os.mkfifo(path)
    return str(path)


def _stat_then(action: Callable[[], None]) -> Callable[[Any], os.stat_result]:
    """An lstat that returns the real answer, then does ``action``: the path changes between check and open."""

    def lstat(path: Any) -> os.stat_result:
        info = os.lstat(path)
        action()
        return info

    return lstat


def _errors(path: str) -> dict[str, KeyFileResult]:
    return {
        "key": files.read_key_file(path),
        "assertion": files.read_assertion(path),
        "ca": files.read_proxy_ca(path),
    }


# ------------------------------------------------------------------------------------------------- read_file


def test_read_file_sends_each_effect_to_its_own_reader(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing")

    assert files.read_file(ReadKeyFile(missing)) == KeyFileResult(
        error=("arc_key_file_unreadable", "the challenge's key file does not exist")
    )
    assert files.read_file(ReadProxyCA(missing)) == KeyFileResult(
        error=("invalid_token_proxy_ca", "cannot read AZURE_KUBERNETES_CA_FILE: No such file or directory")
    )
    assert files.read_file(ReadAssertion(missing)) == KeyFileResult(
        error=(
            "federated_token_file_unreadable",
            "cannot read AZURE_FEDERATED_TOKEN_FILE: No such file or directory",
        )
    )


def test_read_file_returns_each_readers_content(tmp_path: Path) -> None:
    path = _file(tmp_path, f" {KEY}\n".encode())

    assert files.read_file(ReadKeyFile(path)) == KeyFileResult(content=KEY)
    assert files.read_file(ReadProxyCA(path)) == KeyFileResult(content=KEY)
    assert files.read_file(ReadAssertion(path)) == KeyFileResult(content=KEY)


# --------------------------------------------------------------------------------------------- read_key_file


def test_key_file_content_is_stripped_of_surrounding_whitespace(tmp_path: Path) -> None:
    path = _file(tmp_path, f" \t{KEY}\r\n\n".encode())

    assert files.read_key_file(path) == KeyFileResult(content=KEY)


def test_key_file_that_does_not_exist_is_unreadable_with_its_own_message(tmp_path: Path) -> None:
    assert files.read_key_file(str(tmp_path / "missing.key")) == KeyFileResult(
        error=("arc_key_file_unreadable", "the challenge's key file does not exist")
    )


def test_key_file_that_cannot_be_stated_is_unreadable_with_the_reason_and_the_group_hint(
    tmp_path: Path,
) -> None:
    parent = _file(tmp_path, b"not a directory")

    assert files.read_key_file(parent + "/agent.key") == KeyFileResult(
        error=("arc_key_file_unreadable", f"cannot stat the key file: Not a directory{HINT}")
    )


def _deny(path: Path, call: Callable[..., Any]) -> Callable[..., Any]:
    """``call`` (os.lstat or an open), answering EACCES for ``path`` and what is under it."""

    def refuse(name: Any, *args: Any) -> Any:
        if str(name).startswith(str(path)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return call(name, *args)

    return refuse


def test_key_file_in_a_directory_without_permission_is_unreadable_with_permission_denied_and_the_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "agent"
    directory.mkdir()
    path = _file(directory, KEY.encode(), "agent.key")
    if os.geteuid() != 0:
        directory.chmod(0)
    else:  # root is let through any mode: answer as the kernel answers a process outside the himds group
        _patch_os(monkeypatch, lstat=_deny(directory, os.lstat))
    try:
        result = files.read_key_file(path)
    finally:
        directory.chmod(0o700)

    assert result == KeyFileResult(
        error=("arc_key_file_unreadable", f"cannot stat the key file: Permission denied{HINT}")
    )


@pytest.mark.parametrize("reader", ["key", "assertion", "ca"])
def test_a_file_without_read_permission_is_unreadable_with_permission_denied(
    reader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path, KEY.encode(), "unreadable")
    if os.geteuid() != 0:
        os.chmod(path, 0)
    else:  # root opens any mode: answer as the kernel answers a process outside the file's group
        _patch_os(monkeypatch, open=_deny(Path(path), _open_refusing_to_block))

    assert (
        _errors(path)[reader]
        == {
            "key": KeyFileResult(
                error=("arc_key_file_unreadable", f"cannot read the key file: Permission denied{HINT}")
            ),
            "assertion": KeyFileResult(
                error=(
                    "federated_token_file_unreadable",
                    "cannot read AZURE_FEDERATED_TOKEN_FILE: Permission denied",
                )
            ),
            "ca": KeyFileResult(
                error=("invalid_token_proxy_ca", "cannot read AZURE_KUBERNETES_CA_FILE: Permission denied")
            ),
        }[reader]
    )


@pytest.mark.parametrize("kind", ["directory", "symlink", "fifo", "dangling symlink"])
def test_key_file_that_is_not_a_regular_file_is_refused_before_it_is_opened(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.key"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(
            _file(tmp_path, KEY.encode(), "target") if kind == "symlink" else tmp_path / "nowhere"
        )
    opened: list[str] = []

    def open_(name: Any, *args: Any) -> int:
        opened.append(str(name))
        return _open_refusing_to_block(name, *args)

    _patch_os(monkeypatch, open=open_)

    assert files.read_key_file(str(path)) == KeyFileResult(
        error=("arc_invalid_key_file", "the key file is not a regular file")
    )
    assert opened == []


@pytest.mark.parametrize("size", [0, MAX_KEY_FILE_BYTES + 1])
def test_key_file_that_is_empty_or_over_4096_bytes_is_refused_by_its_size(size: int, tmp_path: Path) -> None:
    path = _file(tmp_path, b"k" * size)

    assert files.read_key_file(path) == KeyFileResult(
        error=("arc_invalid_key_file", "the key file is empty or over 4096 bytes")
    )


def test_key_file_of_exactly_4096_bytes_is_read_whole(tmp_path: Path) -> None:
    path = _file(tmp_path, b"k" * MAX_KEY_FILE_BYTES)

    assert files.read_key_file(path) == KeyFileResult(content="k" * MAX_KEY_FILE_BYTES)


# change: the Arc key file is read before its size is checked
@pytest.mark.parametrize("size", [0, 4097, 1 << 20])
def test_arc_key_file_of_a_wrong_size_is_refused_without_being_opened(
    size: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.key"
    path.write_bytes(b"k" * size)
    opened: list[str] = []
    real_open = files.os.open

    def spy_open(name: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(name))
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(files.os, "open", spy_open)
    result = files.read_key_file(str(path))

    assert result.error is not None and result.error[0] == "arc_invalid_key_file"
    assert opened == []


def test_arc_key_file_of_the_largest_size_is_read(tmp_path: Path) -> None:
    path = tmp_path / "agent.key"
    path.write_bytes(b"k" * 4096)

    assert files.read_key_file(str(path)).content == "k" * 4096


@pytest.mark.parametrize(
    ("grown_to", "expected"), [(MAX_KEY_FILE_BYTES, "whole"), (MAX_KEY_FILE_BYTES + 1, "over")]
)
def test_key_file_that_grows_after_the_check_is_read_up_to_4096_bytes_and_refused_one_byte_over(
    grown_to: int, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _file(tmp_path, b"k" * 10)
    _patch_os(monkeypatch, lstat=_stat_then(lambda: Path(path).write_bytes(b"k" * grown_to)))

    result = files.read_key_file(path)

    if expected == "whole":
        assert result == KeyFileResult(content="k" * MAX_KEY_FILE_BYTES)
    else:
        assert result == KeyFileResult(error=("arc_invalid_key_file", "the key file grew over 4096 bytes"))


@pytest.mark.parametrize("swapped_in", ["another file", "fifo"])
def test_key_file_swapped_after_the_check_for_another_file_or_a_fifo_is_refused_without_blocking(
    swapped_in: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another regular file is not the one that was checked; a FIFO is opened without blocking, then refused."""
    path = _file(tmp_path, KEY.encode(), "agent.key")
    other = _file(tmp_path, b"o" * 32, "other.key") if swapped_in == "another file" else _fifo(tmp_path)
    _patch_os(monkeypatch, lstat=_stat_then(lambda: os.replace(other, path)))

    assert files.read_key_file(path) == KeyFileResult(
        error=("arc_invalid_key_file", "the key file is not a regular file")
    )


def test_key_file_swapped_for_a_link_to_itself_after_the_check_is_not_followed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link points at the very file that was checked, so only O_NOFOLLOW refuses it (ELOOP)."""
    target = _file(tmp_path, KEY.encode(), "target.key")
    path = tmp_path / "agent.key"
    path.symlink_to(target)
    _patch_os(monkeypatch, lstat=lambda name: os.lstat(target))

    assert files.read_key_file(str(path)) == KeyFileResult(
        error=(
            "arc_key_file_unreadable",
            f"cannot read the key file: Too many levels of symbolic links{HINT}",
        )
    )


@pytest.mark.parametrize("data", [b"\xff\xfe\x00k", b"k" * 20 + b"\xc3"], ids=["utf-16-bom", "cut-utf-8"])
def test_key_file_that_is_not_utf_8_is_not_text(data: bytes, tmp_path: Path) -> None:
    assert files.read_key_file(_file(tmp_path, data)) == KeyFileResult(
        error=("arc_invalid_key_file", "the key file is not text")
    )


def test_key_file_of_only_whitespace_is_empty(tmp_path: Path) -> None:
    assert files.read_key_file(_file(tmp_path, b" \t\r\n ")) == KeyFileResult(
        error=("arc_invalid_key_file", "the key file is empty")
    )


def test_key_file_may_hold_every_printable_ascii_character_from_space_to_tilde(tmp_path: Path) -> None:
    printable = "".join(chr(code) for code in range(0x21, 0x7F))
    content = f"{printable} {printable}"  # the space inside; "!" first and "~" last

    assert files.read_key_file(_file(tmp_path, content.encode())) == KeyFileResult(content=content)


@pytest.mark.parametrize(
    "content",
    ["a\tb", "a\x1fb", "a\x7fb", "a\x00b", "clé", "\ufeffkey"],
    ids=["tab", "unit-separator", "delete", "nul", "non-ascii", "utf-8-bom"],
)
def test_key_file_holding_a_control_or_non_ascii_character_is_refused(content: str, tmp_path: Path) -> None:
    assert files.read_key_file(_file(tmp_path, content.encode())) == KeyFileResult(
        error=("arc_invalid_key_file", "the key file holds control or non-ASCII characters")
    )


# -------------------------------------------------------------------------------------------- read_assertion


def test_assertion_is_stripped_and_read_through_the_links_kubernetes_swaps(tmp_path: Path) -> None:
    data = tmp_path / "..2026_12_02"
    data.mkdir()
    (data / "token").write_bytes(b"\n header.payload.signature \n")
    (tmp_path / "..data").symlink_to(data)
    (tmp_path / "token").symlink_to(tmp_path / "..data" / "token")

    assert files.read_assertion(str(tmp_path / "token")) == KeyFileResult(content="header.payload.signature")


@pytest.mark.parametrize("data", [b"", b" \n\t\r\n"], ids=["zero-bytes", "whitespace"])
def test_assertion_of_nothing_but_whitespace_is_empty(data: bytes, tmp_path: Path) -> None:
    assert files.read_assertion(_file(tmp_path, data)) == KeyFileResult(
        error=("federated_token_file_unreadable", "AZURE_FEDERATED_TOKEN_FILE is empty")
    )


def test_assertion_keeps_a_utf_8_bom_and_non_ascii_text(tmp_path: Path) -> None:
    """Decoded as utf-8, not utf-8-sig: a BOM is content (str.strip does not remove U+FEFF)."""
    path = _file(tmp_path, "\ufeffjwt-é\n".encode())

    assert files.read_assertion(path) == KeyFileResult(content="\ufeffjwt-é")


# ------------------------------------------------------------------------------------------- read_proxy_ca

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"


def test_proxy_ca_is_stripped_and_read_through_a_link(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").symlink_to(_file(tmp_path, f"\n{PEM}\n\n".encode(), "ca-2026.crt"))

    assert files.read_proxy_ca(str(tmp_path / "ca.crt")) == KeyFileResult(content=PEM)


@pytest.mark.parametrize("data", [b"", b"\n \n"], ids=["zero-bytes", "whitespace"])
def test_proxy_ca_of_nothing_but_whitespace_is_empty_content_not_an_error(
    data: bytes, tmp_path: Path
) -> None:
    assert files.read_proxy_ca(_file(tmp_path, data)) == KeyFileResult(content="")


# ------------------------------------------------------------------------- read_assertion and read_proxy_ca alike


@dataclass(frozen=True)
class _Reader:
    """The federated token file's reader or the AKS token proxy's CA file's: the same rules, each with its own
    error code, variable, file name, size limit and words."""

    read: Callable[[str], KeyFileResult]
    code: str
    variable: str
    name: str
    limit: int
    filler: bytes
    too_large: str
    not_utf_8: bytes
    not_text: str


READERS = [
    pytest.param(
        _Reader(
            files.read_assertion,
            "federated_token_file_unreadable",
            "AZURE_FEDERATED_TOKEN_FILE",
            "token",
            ASSERTION_LIMIT,
            b"a",
            "is too large",
            b"eyJ\xff",
            "is not text",
        ),
        id="assertion",
    ),
    pytest.param(
        _Reader(
            files.read_proxy_ca,
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_FILE",
            "ca.crt",
            CA_LIMIT,
            b"c",
            "is over 1 MiB",
            b"0\x82\x01\xff DER",
            "is not text (PEM)",
        ),
        id="proxy-ca",
    ),
]


@pytest.mark.parametrize("reader", READERS)
def test_assertion_and_proxy_ca_through_a_dangling_link_cannot_be_read(
    reader: _Reader, tmp_path: Path
) -> None:
    (tmp_path / reader.name).symlink_to(tmp_path / "rotated-away")

    assert reader.read(str(tmp_path / reader.name)) == KeyFileResult(
        error=(reader.code, f"cannot read {reader.variable}: No such file or directory")
    )


@pytest.mark.parametrize("kind", ["directory", "fifo", "link to a fifo"])
@pytest.mark.parametrize("reader", READERS)
def test_assertion_and_proxy_ca_that_are_not_a_regular_file_are_refused_without_blocking(
    reader: _Reader, kind: str, tmp_path: Path
) -> None:
    path = tmp_path / reader.name
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to(_fifo(tmp_path))

    assert reader.read(str(path)) == KeyFileResult(
        error=(reader.code, f"{reader.variable} is not a regular file")
    )


@pytest.mark.parametrize("reader", READERS)
def test_assertion_and_proxy_ca_of_exactly_their_limit_are_read_whole(
    reader: _Reader, tmp_path: Path
) -> None:
    result = reader.read(_file(tmp_path, reader.filler * reader.limit))

    assert result.error is None
    assert result.content is not None and len(result.content) == reader.limit
    assert result == KeyFileResult(content=reader.filler.decode() * reader.limit)


@pytest.mark.parametrize("over", [1, 2])
@pytest.mark.parametrize("reader", READERS)
def test_assertion_and_proxy_ca_over_their_limit_are_refused(
    reader: _Reader, over: int, tmp_path: Path
) -> None:
    assert reader.read(_file(tmp_path, reader.filler * (reader.limit + over))) == KeyFileResult(
        error=(reader.code, f"{reader.variable} {reader.too_large}")
    )


@pytest.mark.parametrize("reader", READERS)
def test_assertion_and_proxy_ca_that_are_not_utf_8_are_not_text(reader: _Reader, tmp_path: Path) -> None:
    assert reader.read(_file(tmp_path, reader.not_utf_8)) == KeyFileResult(
        error=(reader.code, f"{reader.variable} {reader.not_text}")
    )


# --------------------------------------------------------------------------------------- _read_regular_file


def _short_first_read(first: int, requests: list[int]) -> Callable[[int, int], bytes]:
    """os.read as a kernel may answer it: fewer bytes than asked on the first call, in full afterwards."""

    def read(descriptor: int, count: int) -> bytes:
        requests.append(count)
        return _read_stopping_at_the_end(descriptor, min(count, first) if len(requests) == 1 else count)

    return read


def test_short_reads_are_joined_up_to_exactly_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(100))
    requests: list[int] = []
    _patch_os(monkeypatch, read=_short_first_read(10, requests))

    assert files._read_regular_file(_file(tmp_path, data), 50, follow_links=True) == data[:50]
    assert requests[:2] == [50, 40]


def test_short_reads_of_a_file_under_the_limit_are_joined_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = bytes(range(30))
    _patch_os(monkeypatch, read=_short_first_read(10, []))

    assert files._read_regular_file(_file(tmp_path, data), 50, follow_links=True) == data


def test_a_file_over_the_limit_is_read_to_the_limit_only(tmp_path: Path) -> None:
    data = bytes(range(100))

    assert files._read_regular_file(_file(tmp_path, data), 1, follow_links=True) == data[:1]
    assert files._read_regular_file(_file(tmp_path, data), 99, follow_links=True) == data[:99]
    assert files._read_regular_file(_file(tmp_path, data), 100, follow_links=True) == data


def test_the_descriptor_is_opened_non_blocking_and_made_blocking_before_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flags: list[int] = []
    blocking: list[bool] = []

    def open_(path: Any, mode: int, *args: Any) -> int:
        flags.append(mode)
        return _open_refusing_to_block(path, mode, *args)

    def read(descriptor: int, count: int) -> bytes:
        blocking.append(os.get_blocking(descriptor))
        return _read_stopping_at_the_end(descriptor, count)

    _patch_os(monkeypatch, open=open_, read=read)

    assert files._read_regular_file(_file(tmp_path, b"abc"), 10, follow_links=True) == b"abc"
    assert len(flags) == 1 and flags[0] & os.O_NONBLOCK and not flags[0] & os.O_NOFOLLOW
    assert flags[0] & os.O_ACCMODE == os.O_RDONLY
    assert blocking and all(blocking)


def test_links_are_followed_only_when_asked(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(_file(tmp_path, b"linked"))

    assert files._read_regular_file(str(link), 10, follow_links=True) == b"linked"
    with pytest.raises(OSError) as caught:
        files._read_regular_file(str(link), 10, follow_links=False)
    assert caught.value.errno == errno.ELOOP


def test_a_regular_file_is_read_without_following_links(tmp_path: Path) -> None:
    path = _file(tmp_path, b"plain")

    assert files._read_regular_file(path, 10, follow_links=False) == b"plain"


def test_what_was_opened_must_be_the_file_that_was_checked(tmp_path: Path) -> None:
    path = _file(tmp_path, b"same")
    other = _file(tmp_path, b"other", "other")

    assert files._read_regular_file(path, 10, follow_links=False, expected=os.lstat(path)) == b"same"
    with pytest.raises(files._NotRegular):
        files._read_regular_file(path, 10, follow_links=False, expected=os.lstat(other))


def test_the_descriptor_is_closed_whether_the_read_succeeds_or_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[int] = []
    closed: list[int] = []

    def open_(*args: Any) -> int:
        opened.append(_open_refusing_to_block(*args))
        return opened[-1]

    def close(descriptor: int) -> None:
        closed.append(descriptor)
        os.close(descriptor)

    _patch_os(monkeypatch, open=open_, close=close)
    files._read_regular_file(_file(tmp_path, b"x"), 10, follow_links=True)
    with pytest.raises(files._NotRegular):
        files._read_regular_file(str(tmp_path), 10, follow_links=True)

    assert len(opened) == 2 and closed == opened


class _WindowsOs(_Os):
    """The os module as Windows shows it to files.py: no O_NONBLOCK or O_NOFOLLOW, and a set_blocking (CPython
    3.12+) that works on pipes only and raises for a regular file."""

    def __getattr__(self, name: str) -> Any:
        if name in ("O_NONBLOCK", "O_NOFOLLOW"):
            raise AttributeError(name)
        return getattr(os, name)


def _set_blocking_on_pipes_only(descriptor: int, blocking: bool) -> None:
    raise OSError(87, "The parameter is incorrect")


@pytest.mark.parametrize("follow_links", [True, False])
def test_without_o_nonblock_the_descriptor_is_read_as_opened_and_set_blocking_is_never_called(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, follow_links: bool
) -> None:
    opened: list[int] = []

    def open_recording(path: Any, flags: int, *args: Any) -> int:
        opened.append(flags)
        return os.open(path, flags, *args)

    monkeypatch.setattr(
        files, "os", _WindowsOs(open=open_recording, set_blocking=_set_blocking_on_pipes_only)
    )

    data = files._read_regular_file(_file(tmp_path, b"content"), 100, follow_links=follow_links)

    assert data == b"content"
    assert opened == [os.O_RDONLY | getattr(os, "O_BINARY", 0)]


# --------------------------------------------------------------------- the credential's reads, through both faces


def _call_with_hang_guard(call: Callable[[], Any], unblock: Callable[[], None]) -> Any:
    """Run ``call`` in a thread; if it is still blocked after 10 s, unblock it and fail (never hang the suite)."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as error:
            outcome.append(error)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(10)
    if worker.is_alive():
        unblock()
        worker.join(5)
        pytest.fail("the call blocked on the key file")
    return outcome[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are a POSIX thing")
@pytest.mark.parametrize("swapped", [False, True], ids=["fifo", "swapped-after-the-check"])
def test_an_arc_key_file_that_is_a_fifo_is_refused_without_blocking(
    face: Any, capturing_server: Any, tmp_path: Any, monkeypatch: Any, swapped: bool
) -> None:
    fifo = tmp_path / "agent.key"
    os.mkfifo(fifo)
    if swapped:  # the check sees a regular file; by the open, the path is a FIFO
        regular = tmp_path / "regular"
        regular.write_text("x" * 32)
        real_lstat = os.lstat
        monkeypatch.setattr(
            files.os,
            "lstat",
            lambda path: real_lstat(regular) if str(path) == str(fifo) else real_lstat(path),
        )
    server = arc_challenge_server(capturing_server, str(fifo))
    credential = face.credential(_environ=arc_environ(server.port), _arc_key_directory=str(tmp_path))

    def unblock() -> None:
        with open(fifo, "wb") as writer:
            writer.write(b"unblocked")

    outcome = _call_with_hang_guard(lambda: credential.get_token(SCOPE), unblock)

    assert isinstance(outcome, ManagedIdentityError)
    assert outcome.error_code == "arc_invalid_key_file"
    assert len(server.raw) == 1
