"""Conversions shared by both drivers: engine requests to azure-core requests, errors to safe details."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import urllib.request
import zlib
from collections.abc import Mapping
from typing import Any, Optional
from urllib.parse import quote, urlsplit

import requests
from azure.core.exceptions import (
    AzureError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpRequest

from .._engine.effects import MAX_BODY_BYTES, Request, TransportFailure
from .._errors import failed

_LOGGER = logging.getLogger("msi_credential")

# requests merges environment proxies unless each scheme is set to None explicitly.
NO_PROXIES: dict[str, None] = {"http": None, "https": None, "all": None}


def user_proxies(kwargs: dict[str, object]) -> dict[str, object]:
    """The ``proxies=`` keyword, as per-request options: it applies to workload identity only (docs/protocols.md section 9)."""
    proxies = kwargs.get("proxies")
    return {"proxies": proxies} if proxies else {}


# Characters left as they are in a query key or value: those RFC 3986 allows in a query that neither requests nor
# aiohttp (yarl) rewrites, so both faces put the same bytes on the wire. Everything else is percent-encoded,
# '&', '=', '+', '#', ';', '%' and spaces included: a value can never end the query or add a parameter.
_QUERY_SAFE = "/:@?!$'()*,"


def encode_query(params: tuple[tuple[str, str], ...]) -> str:
    """``key=value&...`` with every key and value percent-encoded (UTF-8)."""
    return "&".join(
        f"{quote(key, safe=_QUERY_SAFE)}={quote(value, safe=_QUERY_SAFE)}" for key, value in params
    )


def request_url(request: Request) -> str:
    """The endpoint with the request's query appended, encoded here: azure-core's ``params=`` does not quote."""
    if not request.params:
        return request.url
    separator = "&" if "?" in request.url else "?"
    return request.url + separator + encode_query(request.params)


def to_http_request(request: Request) -> HttpRequest:
    return HttpRequest(
        request.method,
        request_url(request),
        headers=dict(request.headers),
        data=dict(request.form) if request.form is not None else None,
    )


class UndecodableBody(Exception):
    """The body is not the gzip or deflate stream its Content-Encoding says."""


class BodyReader:
    """Collects a response body from raw (still encoded) chunks, decoding gzip and deflate itself.

    Both drivers read raw bytes and decode here, so a compressed answer gives the same token on both faces and is
    decoded once. The decoded size is bounded as it is produced (``max_length``): a gzip bomb costs at most
    MAX_BODY_BYTES + 1 bytes of memory, then reading stops and the body counts as too large.
    """

    _LIMIT = MAX_BODY_BYTES + 1

    def __init__(self, headers: Mapping[str, str]) -> None:
        encoding = ""
        for name, value in headers.items():
            if name.lower() == "content-encoding":
                encoding = value.strip().lower()
        self._encoding = encoding if encoding not in ("", "identity") else ""
        self._decoder: Any = None
        self._first = True
        self._parts: list[bytes] = []
        self.size = 0

    @property
    def full(self) -> bool:
        return self.size >= self._LIMIT

    def feed(self, chunk: bytes) -> bool:
        """Take a raw chunk; True when no more should be read (the body is over the limit)."""
        if not chunk:
            return self.full
        if self._first:
            self._first = False
            self._decoder = self._decoder_for(chunk)
        if self._decoder is None:
            self._append(chunk)
            return self.full
        data = chunk
        while data and not self.full:
            try:
                out = self._decoder.decompress(data, self._LIMIT - self.size)
            except zlib.error:
                raise UndecodableBody from None
            self._append(out)
            data = self._decoder.unconsumed_tail
        return self.full

    def _decoder_for(self, first: bytes) -> Any:
        if self._encoding in ("gzip", "x-gzip"):
            if not first.startswith(b"\x1f\x8b"):
                return None  # already decoded by a caller's session (aiohttp auto_decompress)
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._encoding == "deflate":
            looks_zlib = len(first) >= 2 and (first[0] & 0x0F) == 8 and (first[0] << 8 | first[1]) % 31 == 0
            if looks_zlib:
                return zlib.decompressobj(zlib.MAX_WBITS)
            return None if first.lstrip()[:1] in (b"{", b"[", b"<") else zlib.decompressobj(-zlib.MAX_WBITS)
        return None  # identity, or an encoding we do not decode: parsed as it is (and refused if unusable)

    def _append(self, data: bytes) -> None:
        if data:
            self._parts.append(data)
            self.size += len(data)

    def finish(self) -> bytes:
        if self._decoder is not None and not self.full:
            try:
                self._append(self._decoder.flush())
            except zlib.error:
                raise UndecodableBody from None
            if not self._decoder.eof:
                raise UndecodableBody
        return b"".join(self._parts)


def consumed_body(http_response: Any) -> Optional[bytes]:
    """The body requests has already read, or None. requests reads (and decodes) the body of a redirect itself
    before it hands the response back, even with redirects off, leaving the raw stream empty; our own sessions
    never do (sync.NoRedirectSession), a caller's session may."""
    internal = getattr(http_response, "internal_response", None)
    if isinstance(internal, requests.Response) and getattr(internal, "_content_consumed", False):
        content = getattr(internal, "_content", None)
        if isinstance(content, bytes):
            return content
    return None


def stream_method(http_response: Any) -> Any:
    """The response's ``iter_raw`` (raw bytes), else ``iter_bytes`` (decoded: BodyReader sees it is), when its
    class defines one; None for azure-core's older response classes and test doubles that offer only ``body()`` or
    ``text()`` (an attribute a mock makes up on access does not count)."""
    for name in ("iter_raw", "iter_bytes"):
        if callable(getattr(type(http_response), name, None)):
            return getattr(http_response, name)
    return None


def whole_body_methods(http_response: Any) -> list[tuple[str, Any]]:
    """The response's ``body()`` and ``text()``, those it has, in that order (see ``whole_body``)."""
    methods = []
    for name in ("body", "text"):
        method = getattr(http_response, name, None)
        if callable(method):
            methods.append((name, method))
    return methods


def whole_body(name: str, value: Any) -> Optional[bytes]:
    """What ``body()`` or ``text()`` returned, as bytes; None when it is not what that method should return."""
    if name == "body" and isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if name == "text" and isinstance(value, str):
        return value.encode("utf-8")
    return None


def unreadable_response(http_response: Any) -> Exception:
    """The supplied transport answered with a response we cannot read the body of: say what it lacks."""
    return failed(
        f"the supplied transport's response ({type(http_response).__name__}) offers no way to read its body: "
        "none of iter_raw(), iter_bytes(), body() returning bytes or text() returning str",
        error_code="transport_unsupported",
    )


def body_too_large(size: int) -> bool:
    return size > MAX_BODY_BYTES


def failure_detail(error: BaseException) -> str:
    """A short description of a transport failure: the innermost cause's type, and the operating system's words
    for it when it is an OS error. Never the exception's own text: parsers quote what the server sent (an
    HTTP/0.9-style answer puts the token into ``BadStatusLine``), and URLs may carry a secret."""
    inner: BaseException = error
    seen = 0
    while seen < 8:
        nested = getattr(inner, "inner_exception", None) or inner.__cause__ or inner.__context__
        if nested is None or nested is inner:
            break
        inner = nested
        seen += 1
    name = type(inner).__name__
    if isinstance(inner, (TimeoutError, socket.timeout, asyncio.TimeoutError)):
        return f"{name}: timed out"
    if isinstance(inner, OSError) and inner.errno is not None:
        return f"{name}: [Errno {inner.errno}] {inner.strerror or os.strerror(inner.errno)}"
    if isinstance(inner, ssl.SSLError):
        return f"{name}: {inner.reason or 'TLS failure'}"
    return name


def is_pin_failure(error: BaseException) -> bool:
    """True when the chain of causes says the certificate fingerprint did not match."""
    current: BaseException | None = error
    seen = 0
    while current is not None and seen < 10:
        if "fingerprint" in str(current).lower():
            return True
        current = getattr(current, "inner_exception", None) or current.__cause__ or current.__context__
        seen += 1
    return False


def transport_failure(
    error: BaseException, *extra_read_errors: type[BaseException]
) -> Optional[TransportFailure]:
    """The engine's view of an exception raised while sending or reading, or None if it is not a network failure.

    Connect-phase failures (nothing sent) are told apart from failures after the request went out; a certificate
    pin mismatch is its own kind, so it is never retried.
    """
    if isinstance(error, ServiceRequestTimeoutError):
        return TransportFailure("connect_timeout", failure_detail(error))
    if isinstance(error, ServiceRequestError):
        if is_pin_failure(error):
            return TransportFailure("pin_mismatch", "certificate thumbprint mismatch")
        return TransportFailure("connect", failure_detail(error))
    if isinstance(error, (ServiceResponseTimeoutError, asyncio.TimeoutError)):
        return TransportFailure("read_timeout", failure_detail(error))
    if isinstance(error, (AzureError, requests.RequestException, OSError, *extra_read_errors)):
        if is_pin_failure(error):
            return TransportFailure("pin_mismatch", "certificate thumbprint mismatch")
        return TransportFailure("read", failure_detail(error))
    return None


def token_proxy_context(ca_pem: Optional[str]) -> ssl.SSLContext:
    """TLS to the AKS token proxy: certificates checked against the cluster's CA only, or the system CAs."""
    if ca_pem:
        return ssl.create_default_context(cadata=ca_pem)
    return ssl.create_default_context()


_BYPASS_REASONS = {
    "pin": (
        "Service Fabric: the supplied transport is not used for the token request; it goes over a connection "
        "of our own, pinned to IDENTITY_SERVER_THUMBPRINT, so the secret reaches only the pinned server"
    ),
    "token_proxy": (
        "workload identity through the AKS token proxy: the supplied transport is not used for the token request; "
        "it goes over a connection of our own that checks the proxy's certificate against the cluster's CA and "
        "server name, so the client assertion reaches only the proxy"
    ),
    "proxy": (
        "the supplied transport is not used for the token request: it would send it through the proxy that "
        "the environment names for this endpoint (its session trusts the environment), and with it the secret; "
        "it goes directly over a connection of our own"
    ),
    "session_proxy": (
        "the supplied transport is not used for the token request: its aiohttp session was made with a proxy "
        "(proxy=) that every request goes through, and with it the secret; it goes directly over a connection of "
        "our own"
    ),
}


class UserTransport:
    """What both drivers know about a caller's transport: whether close() closed it, and the one warning each
    reason for going around it gets (the same words on both faces)."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.closed = False
        self._warned: set[str] = set()

    def warn_once(self, reason: str) -> None:
        if self.transport is not None and reason not in self._warned:
            self._warned.add(reason)
            _LOGGER.warning(_BYPASS_REASONS[reason])

    def check_open(self) -> None:
        if self.closed:
            raise failed(
                "the credential was closed, and with it the transport it was given; "
                "build a new credential (with a new transport) to get tokens",
                error_code="credential_closed",
            )


def environment_proxy_applies(url: str) -> bool:
    """True when the environment names a proxy for this URL's scheme that NO_PROXY does not bypass."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    proxies = urllib.request.getproxies_environment()
    if not proxies.get(parts.scheme) and not proxies.get("all"):
        return False
    host = parts.hostname or ""
    bypass: Any = getattr(urllib.request, "proxy_bypass_environment")  # noqa: B009 - not in typeshed
    return not bypass(host, proxies)
