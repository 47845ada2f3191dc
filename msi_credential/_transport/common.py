"""Conversions shared by both drivers: engine requests to azure-core requests, errors to safe details."""

from __future__ import annotations

import asyncio
from typing import Optional

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
    """The ``proxies=`` keyword, as per-request options: it applies to workload identity only (docs/protocols.md section 9)."""
    proxies = kwargs.get("proxies")
    return {"proxies": proxies} if proxies else {}


def to_http_request(request: Request) -> HttpRequest:
    return HttpRequest(
        request.method,
        request.url,
        params=dict(request.params),
        headers=dict(request.headers),
        data=dict(request.form) if request.form is not None else None,
    )


def body_too_large(size: int) -> bool:
    return size > MAX_BODY_BYTES


def failure_detail(error: BaseException) -> str:
    """A short description of a transport failure: the innermost cause's type and message, no headers."""
    inner: BaseException = error
    seen = 0
    while seen < 8:
        nested = getattr(inner, "inner_exception", None) or inner.__cause__ or inner.__context__
        if nested is None or nested is inner:
            break
        inner = nested
        seen += 1
    text = str(inner) or str(error)
    return f"{type(inner).__name__}: {text[:300]}"


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
