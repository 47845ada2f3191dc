"""Conversions shared by both drivers: engine requests to azure-core requests, errors to safe details."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from typing import Optional
from urllib.parse import quote

import requests
from azure.core.exceptions import (
    AzureError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseTimeoutError,
)
from azure.core.rest import HttpRequest

from .._engine.effects import MAX_BODY_BYTES, Request, TransportFailure

# requests merges environment proxies unless each scheme is set to None explicitly.
NO_PROXIES: dict[str, None] = {"http": None, "https": None, "all": None}


def user_proxies(kwargs: dict[str, object]) -> dict[str, object]:
    """The ``proxies=`` keyword, as per-request options: it applies to workload identity only (PROTOCOLS.md 9)."""
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
