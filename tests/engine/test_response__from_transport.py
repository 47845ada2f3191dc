"""Hand-off from tests/transport (the lead folds it into this folder's test_response.py): answers the engine
reads as typed errors (invalid_response, response_too_large, unexpected_redirect, http_<status>), tokens no
header could carry, and secrets an endpoint echoes back, scrubbed from every message, attribute and log
record. Both faces (the ``face`` fixture), against the emulator or a loopback server."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from msi_credential import ManagedIdentityError
from msi_credential.emulator import Fault

from ..transport import support
from ..transport.support import (
    SCOPE,
    assert_secret_absent,
    environ_for,
    http_answer,
    log_text,
    token_body,
)

capturing_server = support.capturing_server  # the fixture


@pytest.mark.parametrize(
    ("fault", "error_code"),
    [
        (Fault(200, b"<html>proxy login</html>", {"Content-Type": "text/html"}), "invalid_response"),
        (Fault(200, {"error": "invalid_request", "error_description": "oops"}), "invalid_response"),
        (Fault(200, {"access_token": "", "expires_in": 3600}), "invalid_response"),
        (Fault(200, {"access_token": ["t"], "expires_in": 3600}), "invalid_response"),
        (Fault(200, {"access_token": "t", "expires_in": -1}), "invalid_response"),
        (Fault(200, {"access_token": "t", "expires_on": "99999999999"}), "invalid_response"),
        (Fault(200, b"x" * (1024 * 1024 + 1)), "response_too_large"),
        (Fault(301, b"", {"Location": "http://127.0.0.1:1/"}), "unexpected_redirect"),
        (Fault(307, b"", {"Location": "http://127.0.0.1:1/"}), "unexpected_redirect"),
        (Fault(418, b"teapot"), "http_418"),
        (Fault(401, {"statusCode": 401, "message": "bad header"}), "http_401"),
    ],
)
def test_bad_answers_are_typed_errors_and_the_credential_stays_usable(
    face: Any, emulator_factory: Any, fault: Fault, error_code: str
) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(fault)
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == error_code
    assert len(emulator.requests) == 1  # none of these is retried, redirects are not followed
    assert credential.get_token(SCOPE).token


@pytest.mark.parametrize(
    "body",
    [
        token_body(token="abc\r\nX-Injected: 1"),
        token_body(token="abc\ndef"),
        token_body(token="abc\x00def"),
        token_body(token="abc def"),
        token_body(token="abc\u00e9"),
        {**token_body(), "token_type": "Bearer\r\nX-Injected: 1"},
        {**token_body(), "token_type": "Bear\x00er"},
    ],
    ids=["crlf", "lf", "nul", "space", "non-ascii", "type-crlf", "type-nul"],
)
def test_a_token_with_control_characters_is_refused_and_never_cached(
    face: Any,
    capturing_server: Any,
    body: dict[str, Any],
) -> None:
    server = capturing_server(lambda head: http_answer(body))
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)

    for _ in range(2):
        with pytest.raises(ManagedIdentityError) as caught:
            credential.get_token(SCOPE)
        assert caught.value.error_code == "invalid_response"
        assert body["access_token"] not in str(caught.value)

    assert len(server.raw) == 2  # refused each time, so nothing was cached


APP_SECRET = "app-service-secret"


@pytest.mark.parametrize(
    "echo",
    [
        APP_SECRET,
        APP_SECRET.upper(),
        base64.b64encode(APP_SECRET.encode()).decode(),
        base64.urlsafe_b64encode(APP_SECRET.encode()).decode().rstrip("="),
        APP_SECRET.encode().hex(),
        "app%2Dservice-secret".replace("%2D", "-").replace("-", "%2D", 1),
    ],
    ids=["plain", "upper", "base64", "base64url", "hex", "percent"],
)
def test_a_secret_echoed_by_the_server_is_in_no_message_attribute_or_log_record(
    face: Any,
    capturing_server: Any,
    caplog: Any,
    echo: str,
) -> None:
    body = {"error": {"code": f"Bad{echo}", "message": f"got {echo}", "correlationId": f"cid-{echo}"}}
    server = capturing_server(lambda head: http_answer(body, 500))
    credential = face.credential(
        _environ=environ_for("app_service", server.port), retry_total=0, logging_enable=True
    )
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.correlation_id is not None
    assert caught.value.correlation_id.startswith("cid-")
    assert_secret_absent(caught.value, echo, APP_SECRET)
    assert echo.lower() not in log_text(caplog).lower()
