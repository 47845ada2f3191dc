"""Whole-attempt deadlines for the sync driver: one timer thread per process, no thread per request.

Socket timeouts bound each read, not an answer: an endpoint that trickles its headers (or sends ``100 Continue``
forever) could hold a caller, and every single-flight waiter behind it, indefinitely. The caller's own thread does
the I/O; the sockets an attempt opens or reuses register with its ``Watch`` (through the connection classes in
``sync.py``), and when the attempt's budget runs out the timer thread shuts them down, which ends any blocked read at
once. Nothing is left behind: the caller unwinds with an error, urllib3 discards the broken connection.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import os
import socket
import threading
import time
from typing import Any, Optional

_current = threading.local()


class Watch:
    """One attempt's deadline and the sockets it uses."""

    __slots__ = ("_lock", "_sockets", "cancelled", "fired", "response")

    def __init__(self) -> None:
        self.fired = False
        self.cancelled = False
        self.response: Any = None  # a caller's transport: cut the response's connection (body phase only)
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: Optional[socket.socket]) -> None:
        if sock is None:
            return
        with self._lock:
            if not self.fired:
                self._sockets.append(sock)
                return
        _shut(sock)

    def fire(self) -> None:
        with self._lock:
            if self.cancelled or self.fired:
                return
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)
        if not sockets and self.response is not None:
            _shut_response(self.response)

    def __enter__(self) -> Watch:
        _current.watch = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _current.watch = None
        with self._lock:
            self.cancelled = True
            self._sockets = []
            self.response = None


def register(sock: Optional[socket.socket]) -> None:
    """Called by our connection classes when the calling thread's attempt connects or reuses a socket."""
    watch: Optional[Watch] = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket call even for an SSLSocket: it ends a blocked read without touching TLS state.
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _shut_response(http_response: Any) -> None:
    connection = getattr(
        getattr(getattr(http_response, "internal_response", None), "raw", None), "connection", None
    )
    sock = getattr(connection, "sock", None)
    if sock is not None:
        _shut(sock)
        return
    with contextlib.suppress(Exception):  # best effort on a caller's transport
        http_response.close()


class _Timer:
    """A heap of deadlines served by one daemon thread, started on first use (again in a forked child)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Watch]] = []
        self._order = itertools.count()
        self._thread: Optional[threading.Thread] = None
        self._pid = os.getpid()

    def watch(self, seconds: float) -> Watch:
        watch = Watch()
        when = time.monotonic() + max(seconds, 0.0)
        with self._condition:
            if self._pid != os.getpid():  # a forked child: the parent's thread is not here
                self._reset()
                return self.watch(seconds)
            heapq.heappush(self._heap, (when, next(self._order), watch))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="msi-credential-deadlines", daemon=True
                )
                self._thread.start()
            self._condition.notify()
        return watch

    def _serve(self) -> None:
        condition = self._condition
        while True:
            due: list[Watch] = []
            with condition:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                if not self._heap:
                    condition.wait()
                    continue
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    due.append(heapq.heappop(self._heap)[2])
                if not due:
                    condition.wait(self._heap[0][0] - now)
                    if len(self._heap) > 64:  # drop finished attempts that are not at the top
                        self._heap = [item for item in self._heap if not item[2].cancelled]
                        heapq.heapify(self._heap)
                    continue
            for watch in due:
                watch.fire()

    @property
    def thread(self) -> Optional[threading.Thread]:
        return self._thread


TIMER = _Timer()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=TIMER._reset)
