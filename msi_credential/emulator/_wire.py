"""What every emulated endpoint shares on the wire: the recorded request, the reply, identities and path rules."""

from __future__ import annotations

import contextlib
import dataclasses
import hmac
import json
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Optional, Union

JsonBody = Union[bytes, Mapping[str, Any]]

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

# What the emulator keeps of the requests it receives, however long it serves (``Emulator.requests``):
RECORDED_REQUESTS = 1000  # the most recent requests kept, by default (``Emulator(record_limit=)``)
MAX_RECORDED_BODY = 64 * 1024  # bytes of a body kept; the rest is dropped (``RecordedRequest.body_length``)
MAX_RECORDED_BYTES = 32 * 1024 * 1024  # the kept requests' bodies, headers, query and form, in all


class EmulatorSetupError(RuntimeError):
    """The emulator cannot start as asked: a missing optional dependency, or a place it may not write."""


@dataclass(frozen=True)
class UserAssignedIdentity:
    """The ids of one managed identity."""

    client_id: str
    object_id: str
    resource_id: str


@dataclass(frozen=True, repr=False)
class RecordedRequest:
    """One request as the emulator received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    form: dict[str, str]
    body: bytes
    scheme: str
    # The TLS server name (SNI) the client sent, over https; None when it sent none (or over http).
    server_name: Optional[str] = None
    # The request line as received ("GET /path?query HTTP/1.1"): the query exactly as the client encoded it.
    request_line: str = ""
    # When the body was longer than MAX_RECORDED_BODY: its length as received (``body`` then holds its first
    # MAX_RECORDED_BODY bytes, and ``form`` is empty). None: ``body`` is the whole body.
    body_length: Optional[int] = None

    def __repr__(self) -> str:
        # Header values and the body may carry secrets: show the header names only.
        return (
            f"RecordedRequest(method={self.method!r}, path={self.path!r}, headers={sorted(self.headers)!r})"
        )


def _size(request: RecordedRequest) -> int:
    """Roughly what a recorded request holds, in bytes (characters counted as bytes)."""
    pairs = (*request.query.items(), *request.headers.items(), *request.form.items())
    return len(request.body) + len(request.path) + sum(len(name) + len(value) for name, value in pairs) + 64


class Recording:
    """The requests an emulator received, bounded however long it serves and whatever clients send: the most
    recent ``limit`` (None: no count limit), bodies cut to MAX_RECORDED_BODY bytes, and the oldest dropped while
    they hold more than MAX_RECORDED_BYTES in all (the newest is always kept). ``received`` counts every request.
    Not locked: the emulator calls it under its own lock."""

    def __init__(self, limit: Optional[int]) -> None:
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ValueError("record_limit must be an int of 0 or more, or None")
        self.limit = limit
        self.received = 0
        self._kept: deque[tuple[RecordedRequest, int]] = deque()
        self._bytes = 0

    def add(self, request: RecordedRequest) -> None:
        self.received += 1
        if self.limit == 0:
            return
        if len(request.body) > MAX_RECORDED_BODY:
            request = dataclasses.replace(
                request, body=request.body[:MAX_RECORDED_BODY], form={}, body_length=len(request.body)
            )
        size = _size(request)
        self._kept.append((request, size))
        self._bytes += size
        while (self.limit is not None and len(self._kept) > self.limit) or (
            self._bytes > MAX_RECORDED_BYTES and len(self._kept) > 1
        ):
            self._bytes -= self._kept.popleft()[1]

    def requests(self) -> list[RecordedRequest]:
        return [request for request, _ in self._kept]

    def clear(self) -> None:
        self._kept.clear()
        self._bytes = 0
        self.received = 0


@dataclass(frozen=True)
class Reply:
    """One HTTP answer: status, JSON object (or raw bytes) and extra headers."""

    status: int
    body: JsonBody = b""
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Minted:
    """An access token the emulator minted, with the times and identity its answer states."""

    token: str
    resource: str
    identity: UserAssignedIdentity
    now: int
    lifetime: int


def media_type(headers: Mapping[str, str]) -> str:
    """The request's Content-Type without parameters, in lower case ('' when absent)."""
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def encode_body(body: JsonBody) -> bytes:
    """The bytes of a reply body: JSON for a mapping."""
    if isinstance(body, Mapping):
        return json.dumps(dict(body)).encode("utf-8")
    return body


def secret_matches(given: str | None, secret: str) -> bool:
    """Whether ``given`` is ``secret``, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


def path_matches(expected: str, path: str) -> bool:
    """Whether ``path`` names the endpoint at ``expected`` as the services take it: any letter case, and one
    trailing slash allowed (msal-node asks IMDS for ``/metadata/identity/oauth2/token/``)."""
    if path.endswith("/") and len(path) > 1:
        path = path[:-1]
    return path.lower() == expected.lower()


def find_identity(
    identities: Iterable[UserAssignedIdentity], attribute: str, value: str
) -> UserAssignedIdentity | None:
    """The identity whose ``attribute`` (client_id, object_id or resource_id) is ``value``, in any letter case."""
    wanted = value.lower()
    for identity in identities:
        if str(getattr(identity, attribute)).lower() == wanted:
            return identity
    return None


def write_atomically(path: str, text: str, *, prefix: str = ".staging-", encoding: str = "ascii") -> None:
    """Replace the file at ``path`` with ``text`` in one rename (owner-readable only, as mkstemp makes it)."""
    directory = os.path.dirname(os.path.abspath(path))
    descriptor, staging = tempfile.mkstemp(dir=directory, prefix=prefix)
    try:
        with os.fdopen(descriptor, "w", encoding=encoding) as stream:
            stream.write(text)
        os.replace(staging, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(staging)
        raise


def write_private(path: str, data: bytes, mode: int = 0o600) -> None:
    """Create the file at ``path`` (it must not exist) with ``mode`` and write ``data``."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
