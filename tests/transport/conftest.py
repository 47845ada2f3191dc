"""Fixtures of the transport tests: loopback servers that answer as no HTTP server would (``raw_server``) or record
the request bytes (``capturing_server``), defined in support.py."""

from __future__ import annotations

from .support import capturing_server, raw_server

__all__ = ["capturing_server", "raw_server"]
