"""Turn an HTTP answer into a token or a typed error (docs/protocols.md sections 3 and 4)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Optional
from urllib.parse import quote, quote_plus, unquote

from .._errors import ManagedIdentityError, failed, unavailable
from .._source import ManagedIdentitySource
from .effects import MAX_BODY_BYTES, Response
from .expiry import ExpiryError, token_times
from .record import Record, field
from .sources import SPECS, ErrorAnswer

_DESCRIPTION_LIMIT = 500
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_NON_WORD = re.compile(r"[^a-z0-9]+")
_HEADER_SAFE = re.compile(r"[!-~]+")  # printable ASCII, no spaces or control characters


class Token(Record):
    """A token the engine accepted. ``body`` keeps the parsed JSON for source-specific checks (Arc echo)."""

    token: str = field(repr=False)
    expires_on: int
    refresh_on: int
    token_type: str = "Bearer"
    body: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


class ErrorBody(Record):
    code: Optional[str] = None
    description: Optional[str] = None
    correlation_id: Optional[str] = None


def load_json_object(body: bytes) -> Optional[dict[str, Any]]:
    """The body as a JSON object (whatever the Content-Type), or None."""
    try:
        text = body.decode("utf-8-sig")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def parse_error_body(body: bytes) -> ErrorBody:
    """Code, description and correlation id from the error shapes of IMDS, App Service, Service Fabric, Entra."""
    data = load_json_object(body)
    if data is None:
        return ErrorBody()
    code: object = data.get("error")
    description: object = data.get("error_description") or data.get("message")
    correlation: object = data.get("correlation_id") or data.get("correlationId")
    if isinstance(code, dict):
        nested = code
        code = nested.get("code")
        description = description or nested.get("message")
        correlation = correlation or nested.get("correlationId")
    if code is None:
        code = data.get("code")
    return ErrorBody(
        code=code if isinstance(code, str) and code.strip() else None,
        description=description if isinstance(description, str) else None,
        correlation_id=correlation if isinstance(correlation, str) and correlation else None,
    )


def snake_case(code: str) -> str:
    """``SecretHeaderNotFound`` -> ``secret_header_not_found``; ``invalid_request`` stays."""
    spaced = _CAMEL_BOUNDARY.sub("_", code.strip())
    return _NON_WORD.sub("_", spaced.lower()).strip("_")[:64] or "unknown_error"


def secret_forms(secret: str) -> set[str]:
    """The ways a server may echo a secret: as given, base64 (standard and URL-safe, padded or not),
    percent-encoded and hex. Matched ignoring case, so upper- and lower-cased echoes are caught too."""
    raw = secret.encode("utf-8")
    forms = {secret, quote(secret, safe=""), quote_plus(secret), raw.hex()}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        forms.update((text, text.rstrip("=")))
    return {form for form in forms if len(form) >= 4}


def scrub(text: str, secrets: Iterable[str], limit: Optional[int] = None) -> str:
    """Remove secret values from a message the server sent back (it may echo what it was given).

    With ``limit``, at most ``limit`` characters are kept, and only the start of the text that can reach them is
    searched (percent-decoding shrinks text at most ninefold): a megabyte of error text costs no more than a short
    one, and a secret cut at the edge of what is searched can only be in what is thrown away."""
    forms: set[str] = set()
    for secret in secrets:
        if secret and len(secret) >= 4:
            forms |= secret_forms(secret)
    if limit is not None:
        text = text[: 9 * (limit + max((len(form) for form in forms), default=0))]
        return _without(text, forms)[:limit]
    return _without(text, forms)


def _without(text: str, forms: set[str]) -> str:
    if not forms or not text:
        return text
    pattern = re.compile(
        "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)), re.IGNORECASE
    )
    text = pattern.sub("***", text)
    if "%" in text:  # an echo percent-encoded in some other way than ours
        decoded = unquote(text)
        scrubbed = pattern.sub("***", decoded)
        if scrubbed != decoded:
            return scrubbed
    return text


def parse_token(
    response: Response,
    *,
    source: ManagedIdentitySource,
    start: float,
) -> Token:
    """A token from a 2xx answer, or ManagedIdentityError ``invalid_response`` / ``response_too_large``."""
    if response.too_large:
        raise failed(
            f"{label(source)} answered with a body over {MAX_BODY_BYTES} bytes",
            error_code="response_too_large",
            status_code=response.status,
            source=source,
        )
    data = load_json_object(response.body)
    if data is None:
        absence = SPECS[source].absence
        if absence is not None:
            name = label(source)
            raise unavailable(
                f"{name} answered {response.status} with a body that is not JSON: this is not {name}, "
                "managed identity is not available here",
                error_code=absence.code,
                status_code=response.status,
                source=source,
            )
        raise _invalid(source, response.status, "the body is not a JSON object")
    access_token = data.get("access_token")
    if not isinstance(access_token, str) or not access_token.strip():
        raise _invalid(source, response.status, "the body has no access_token string")
    if not _HEADER_SAFE.fullmatch(access_token):
        # CR, LF, NUL, spaces or non-ASCII would break every request that carries the token: refuse it now
        # rather than cache it for its lifetime.
        raise _invalid(
            source, response.status, "the access_token holds characters an HTTP header cannot carry"
        )
    token_type = data.get("token_type")
    if isinstance(token_type, str) and token_type and not _HEADER_SAFE.fullmatch(token_type):
        raise _invalid(source, response.status, "the token_type is not a printable ASCII word")
    try:
        expires_on, refresh_on = token_times(
            start=start,
            expires_in=data.get("expires_in"),
            expires_on=data.get("expires_on"),
            refresh_in=data.get("refresh_in"),
        )
    except ExpiryError as error:
        raise _invalid(source, response.status, str(error)) from None
    return Token(
        token=access_token,
        expires_on=expires_on,
        refresh_on=refresh_on,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        body=data,
    )


def _invalid(source: ManagedIdentitySource, status: int, why: str) -> ManagedIdentityError:
    return failed(
        f"{label(source)} answered {status} without a usable token: {why}",
        error_code="invalid_response",
        status_code=status,
        source=source,
    )


def error_from_response(
    response: Response,
    *,
    source: ManagedIdentitySource,
    secrets: Iterable[str] = (),
) -> ManagedIdentityError:
    """Map a non-2xx answer (after retries) to the typed error of docs/protocols.md section 4."""
    status = response.status
    body = b"" if response.too_large else response.body
    parsed = parse_error_body(body)
    description = scrub(parsed.description or "", secrets, _DESCRIPTION_LIMIT)
    server_code = scrub(parsed.code, secrets, 100) if parsed.code else None
    correlation_id = scrub(parsed.correlation_id, secrets, 100) if parsed.correlation_id else None

    def message(summary: str) -> str:
        parts = [f"{label(source)} {summary} (HTTP {status}"]
        if server_code:
            parts.append(f", {server_code}")
        parts.append(")")
        if description:
            parts.append(f": {description}")
        if correlation_id:
            parts.append(f" [correlation id {correlation_id}]")
        return "".join(parts)

    def make_failed(code: str, summary: str = "refused the token request") -> ManagedIdentityError:
        return failed(
            message(summary),
            error_code=code,
            status_code=status,
            correlation_id=correlation_id,
            source=source,
        )

    def make_unavailable(code: str, summary: str) -> ManagedIdentityError:
        return unavailable(
            message(summary),
            error_code=code,
            status_code=status,
            correlation_id=correlation_id,
            source=source,
        )

    spec = SPECS[source]
    if spec.absence is not None and load_json_object(body) is None:
        return make_unavailable(
            spec.absence.code,
            f"did not answer like {spec.label} (the body is not JSON); managed identity is not available here",
        )
    if 300 <= status < 400:
        return make_failed("unexpected_redirect", "redirected the token request; redirects are refused")
    if spec.read_error is not None:
        meaning = spec.read_error(ErrorAnswer(status, server_code, description))
        if meaning is not None:
            make = make_unavailable if meaning.unavailable else make_failed
            return make(meaning.error_code, meaning.summary)
    if 200 <= status < 300:
        return _invalid(source, status, "unexpected answer")
    return make_failed(snake_case(server_code) if server_code else f"http_{status}")


def label(source: ManagedIdentitySource) -> str:
    """A human name for the source, for messages."""
    return SPECS[source].label
