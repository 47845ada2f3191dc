"""msi_credential/_engine/response.py: ``parse_token`` and ``error_from_response``, docs/protocols.md sections 3
(response parsing) and 4 (errors), called directly: the common mapping, the messages word for word, the scrubbing
of secrets, and properties over any bytes (hypothesis). Each source's own reading of its error answers is tested
with that source (tests/engine/sources/). Socket-free: the mutation run of docs/mutation.md runs them.

The last three sections go further: through the scripted driver of tests/engine/scripted.py (a 200 without a token
is an error of the source), and through both faces (the ``face`` fixture) against the emulator or a loopback server:
2xx answers that are not usable tokens, a body over one mebibyte, JSON served as text/plain, answers read as typed
errors (invalid_response, response_too_large, unexpected_redirect, http_<status>), tokens no header could carry, and
secrets an endpoint echoes back, scrubbed from every message, attribute and log record.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msi_credential import ManagedIdentitySource
from msi_credential._engine.effects import MAX_BODY_BYTES, Response
from msi_credential._engine.response import (
    ErrorBody,
    error_from_response,
    parse_error_body,
    parse_token,
    scrub,
    secret_forms,
    snake_case,
)
from msi_credential._errors import CredentialUnavailableError, ManagedIdentityError
from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import Fault

from ..faces.support import STORAGE, failure
from ..transport import support
from ..transport.support import SCOPE, assert_secret_absent, environ_for, http_answer, log_text
from ..transport.support import token_body as wire_token_body
from .scripted import APP_SERVICE, Clock, Script, answer, engine, error_fields, error_for, is_failed, raised
from .sources.support import RESOURCE
from .sources.support import failure as scripted_failure

START = 1_700_000_000.0
TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJub25lIn0.secret-token-payload."
SECRET = "secret-header-value-5c1d"
ALL_SOURCES = list(S)
NON_IMDS_SOURCES = [source for source in S if source is not S.IMDS]

IMDS_BODY = {
    "error": "invalid_request",
    "error_description": "Identity not found",
    "correlation_id": "imds-corr",
}
APP_SERVICE_BODY = {
    "statusCode": 400,
    "message": "Unable to load the proper Managed Identity.",
    "correlationId": "app-corr",
}
SERVICE_FABRIC_BODY = {
    "error": {"correlationId": "sf-corr", "code": "SecretHeaderNotFound", "message": "Secret header missing"}
}
ENTRA_BODY = {
    "error": "invalid_client",
    "error_description": "AADSTS700016: Application not found.",
    "error_codes": [700016],
    "trace_id": "trace",
    "correlation_id": "entra-corr",
}


def token_body(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": TOKEN, "expires_in": 3600}
    body.update(fields)
    return {key: value for key, value in body.items() if value is not None}


# --- parse_token ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_parse_token_happy_path(source: S) -> None:
    token = parse_token(
        answer(200, token_body(token_type="Bearer", resource="r")), source=source, start=START
    )
    assert token.token == TOKEN
    assert token.expires_on == int(START) + 3600
    assert token.refresh_on == int(START) + 3300
    assert token.token_type == "Bearer"
    assert token.body["resource"] == "r"
    assert TOKEN not in repr(token)


def test_parse_token_uses_expires_on_and_refresh_in() -> None:
    body = {"access_token": TOKEN, "expires_on": str(int(START) + 86400), "refresh_in": 3600}
    token = parse_token(answer(200, body), source=S.APP_SERVICE, start=START)
    assert (token.expires_on, token.refresh_on) == (int(START) + 86400, int(START) + 3600)


@pytest.mark.parametrize("token_type", [None, "", 5])
def test_parse_token_token_type_defaults_to_bearer(token_type: Any) -> None:
    body = token_body()
    if token_type is not None:
        body["token_type"] = token_type
    assert parse_token(answer(200, body), source=S.IMDS, start=START).token_type == "Bearer"


def test_parse_token_keeps_a_given_token_type() -> None:
    token = parse_token(answer(200, token_body(token_type="pop")), source=S.IMDS, start=START)
    assert token.token_type == "pop"


def test_parse_token_ignores_content_type() -> None:
    token = parse_token(answer(200, token_body(), {"content-type": "text/plain"}), source=S.IMDS, start=START)
    assert token.token == TOKEN


def test_parse_token_accepts_a_utf8_bom() -> None:
    body = b"\xef\xbb\xbf" + json.dumps(token_body()).encode()
    assert parse_token(answer(200, body), source=S.APP_SERVICE, start=START).token == TOKEN


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"<html><body>Proxy login</body></html>",
        b"",
        json.dumps([token_body()]).encode(),
        b'"a string"',
        b"null",
        b"\xff\xfe\x00garbage",
    ],
    ids=["text", "html", "empty", "array", "json-string", "null", "bad-utf8"],
)
@pytest.mark.parametrize("source", NON_IMDS_SOURCES)
def test_parse_token_non_object_body_is_failed_invalid_response(source: S, body: bytes) -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(200, body), source=source, start=START)
    assert is_failed(caught.value)
    assert caught.value.error_code == "invalid_response"
    assert caught.value.status_code == 200
    assert caught.value.source is source


@pytest.mark.parametrize("body", [b"<html><body>Proxy login</body></html>", b"not json"])
def test_parse_token_imds_non_json_2xx_is_unavailable_imds_unreachable(body: bytes) -> None:
    with pytest.raises(CredentialUnavailableError) as caught:
        parse_token(answer(200, body), source=S.IMDS, start=START)
    assert caught.value.error_code == "imds_unreachable"


@pytest.mark.parametrize(
    "body",
    [
        {"expires_in": 3600},
        token_body(access_token=""),
        token_body(access_token="   "),
        token_body(access_token=None) | {"access_token": None},
        token_body(access_token=12345),
        token_body(access_token=["a"]),
        token_body(access_token={"t": "a"}),
    ],
    ids=["missing", "empty", "whitespace", "null", "int", "list", "object"],
)
@pytest.mark.parametrize("source", ALL_SOURCES)
def test_parse_token_without_a_usable_access_token_is_failed_invalid_response(
    source: S, body: dict[str, Any]
) -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(200, body), source=source, start=START)
    assert is_failed(caught.value)
    assert caught.value.error_code == "invalid_response"


@pytest.mark.parametrize(
    "body",
    [
        {"access_token": TOKEN},
        token_body(expires_in="soon"),
        token_body(expires_in=-5),
        token_body(expires_in=30 * 24 * 3600),
        {"access_token": TOKEN, "expires_on": "yesterday"},
    ],
    ids=["no-expiry", "garbage-expires-in", "past", "too-long", "garbage-expires-on"],
)
def test_parse_token_bad_expiry_is_failed_invalid_response_without_the_token(body: dict[str, Any]) -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(200, body), source=S.APP_SERVICE, start=START)
    assert is_failed(caught.value)
    assert caught.value.error_code == "invalid_response"
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(caught.value)


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_parse_token_body_over_one_mebibyte_is_response_too_large(source: S) -> None:
    body = json.dumps(token_body(padding="x" * MAX_BODY_BYTES)).encode()
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(200, body), source=source, start=START)
    assert is_failed(caught.value)
    assert caught.value.error_code == "response_too_large"


def test_parse_token_body_of_exactly_one_mebibyte_is_parsed() -> None:
    prefix = json.dumps(token_body(padding=""))
    body = (prefix[:-2] + "x" * (MAX_BODY_BYTES - len(prefix)) + prefix[-2:]).encode()
    assert len(body) == MAX_BODY_BYTES
    assert parse_token(answer(200, body), source=S.IMDS, start=START).token == TOKEN


# --- parse_error_body -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (IMDS_BODY, ErrorBody("invalid_request", "Identity not found", "imds-corr")),
        (APP_SERVICE_BODY, ErrorBody(None, "Unable to load the proper Managed Identity.", "app-corr")),
        (SERVICE_FABRIC_BODY, ErrorBody("SecretHeaderNotFound", "Secret header missing", "sf-corr")),
        (ENTRA_BODY, ErrorBody("invalid_client", "AADSTS700016: Application not found.", "entra-corr")),
        ({"code": "Throttled", "message": "slow down"}, ErrorBody("Throttled", "slow down", None)),
        ({}, ErrorBody()),
        ({"error": 5, "error_description": ["x"], "correlation_id": 7}, ErrorBody()),
        ({"error": "", "correlationId": ""}, ErrorBody()),
    ],
    ids=["imds", "app_service", "service_fabric", "entra", "top-level-code", "empty", "wrong-types", "blank"],
)
def test_parse_error_body_shapes(body: dict[str, Any], expected: ErrorBody) -> None:
    assert parse_error_body(json.dumps(body).encode()) == expected


@pytest.mark.parametrize("body", [b"", b"<html/>", b"[1, 2]", b"\x80\x81", b"{" * 100_000])
def test_parse_error_body_of_non_object_is_empty(body: bytes) -> None:
    assert parse_error_body(body) == ErrorBody()


# --- error_from_response: the section 4 table -----------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 500, 503])
@pytest.mark.parametrize("body", [b"", b"<html>gateway</html>", b"plain text", b"[]"])
def test_imds_non_json_body_is_unavailable_imds_unreachable(status: int, body: bytes) -> None:
    error = error_from_response(answer(status, body), source=S.IMDS)
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "imds_unreachable"
    assert error.status_code == status
    assert error.source is S.IMDS


@pytest.mark.parametrize("status", [301, 302, 307])
def test_imds_non_json_redirect_is_unavailable_imds_unreachable(status: int) -> None:
    error = error_from_response(
        answer(status, b"<html>moved</html>", {"location": "http://x"}), source=S.IMDS
    )
    assert isinstance(error, CredentialUnavailableError)
    assert error.error_code == "imds_unreachable"


@pytest.mark.parametrize("source", ALL_SOURCES)
@pytest.mark.parametrize("status", [300, 301, 302, 303, 307, 308])
def test_redirect_is_failed_unexpected_redirect(source: S, status: int) -> None:
    error = error_from_response(
        answer(status, {"error": "moved"}, {"location": "http://evil"}), source=source
    )
    assert is_failed(error)
    assert error.error_code == "unexpected_redirect"
    assert error.status_code == status


@pytest.mark.parametrize("source", NON_IMDS_SOURCES)
@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"error": "invalid_request", "error_description": "x"}, "invalid_request"),
        (401, {"error": {"code": "SomethingElseHappened", "message": "m"}}, "something_else_happened"),
        (403, {"code": "AuthorizationFailed"}, "authorization_failed"),
        (429, {}, "http_429"),
        (500, b"<html>oops</html>", "http_500"),
        (502, b"", "http_502"),
        (503, {"error": "  "}, "http_503"),
    ],
)
def test_generic_error_code_is_snake_case_server_code_or_http_status(
    source: S, status: int, body: Any, code: str
) -> None:
    error = error_from_response(answer(status, body), source=source)
    assert is_failed(error)
    assert error.error_code == code
    assert error.status_code == status
    assert error.source is source


@pytest.mark.parametrize("source", NON_IMDS_SOURCES)
def test_2xx_reaching_the_error_mapper_is_failed_invalid_response(source: S) -> None:
    error = error_from_response(answer(200, b"{}"), source=source)
    assert is_failed(error)
    assert error.error_code == "invalid_response"


@pytest.mark.parametrize(
    ("source", "status", "body", "correlation"),
    [
        (S.AZURE_ARC, 500, IMDS_BODY, "imds-corr"),
        (S.IMDS, 500, IMDS_BODY, "imds-corr"),
        (S.APP_SERVICE, 500, APP_SERVICE_BODY, "app-corr"),
        (S.SERVICE_FABRIC, 500, SERVICE_FABRIC_BODY, "sf-corr"),
        (S.WORKLOAD_IDENTITY, 401, ENTRA_BODY, "entra-corr"),
        (S.CLOUD_SHELL, 500, {"error": "x"}, None),
    ],
)
def test_error_attributes_carry_status_correlation_id_and_source(
    source: S, status: int, body: dict[str, Any], correlation: str | None
) -> None:
    error = error_from_response(answer(status, body), source=source)
    assert error.status_code == status
    assert error.correlation_id == correlation
    assert error.source is source
    if correlation:
        assert correlation in str(error)
    assert f"HTTP {status}" in str(error)


def test_message_carries_status_code_and_description() -> None:
    error = error_from_response(answer(500, ENTRA_BODY), source=S.WORKLOAD_IDENTITY)
    assert "HTTP 500" in error.message
    assert "invalid_client" in error.message
    assert "AADSTS700016" in error.message


def test_failed_errors_are_managed_identity_errors_but_not_unavailable() -> None:
    error = error_from_response(answer(500, {"error": "boom"}), source=S.APP_SERVICE)
    assert isinstance(error, ManagedIdentityError)
    assert not isinstance(error, CredentialUnavailableError)
    from azure.core.exceptions import ClientAuthenticationError

    assert isinstance(error, ClientAuthenticationError)


def test_description_is_truncated_to_500_characters() -> None:
    description = "A" * 499 + "B" + "C" * 2000
    error = error_from_response(
        answer(500, {"error": "e", "error_description": description}), source=S.AZURE_ARC
    )
    assert "A" * 499 + "B" in error.message
    assert "C" not in error.message.split("B", 1)[1]


@pytest.mark.parametrize("source", ALL_SOURCES)
def test_secrets_are_scrubbed_from_messages(source: S) -> None:
    body = {
        "error": f"bad_{SECRET}",
        "error_description": f"header {SECRET} was wrong; {SECRET}",
        "correlation_id": "c1",
    }
    error = error_from_response(answer(500, body), source=source, secrets=[SECRET])
    assert SECRET not in str(error)
    assert SECRET not in error.message
    assert "***" in error.message


def test_secret_is_scrubbed_before_truncation() -> None:
    description = "x" * 490 + SECRET
    error = error_from_response(
        answer(500, {"error": "e", "error_description": description}),
        source=S.APP_SERVICE,
        secrets=[SECRET],
    )
    assert SECRET[:10] not in error.message


def test_scrubbing_a_long_error_description_searches_a_bounded_prefix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import re

    from msi_credential._engine import response as module

    searched: list[int] = []

    class Recording:
        def __init__(self, pattern: re.Pattern[str]) -> None:
            self.pattern = pattern

        def sub(self, replacement: str, text: str) -> str:
            searched.append(len(text))
            return self.pattern.sub(replacement, text)

    class RecordingRe:
        escape = staticmethod(re.escape)
        IGNORECASE = re.IGNORECASE

        @staticmethod
        def compile(pattern: str, flags: int = 0) -> Recording:
            return Recording(re.compile(pattern, flags))

    monkeypatch.setattr(module, "re", RecordingRe)
    # a body just under the size limit, built so that every position starts a near-match of the secret
    description = "%" + ("s" * 900_000) + SECRET
    body = json.dumps({"error": "e", "error_description": description, "correlation_id": "s" * 900})

    error = error_from_response(answer(500, body.encode()), source=S.APP_SERVICE, secrets=[SECRET])

    assert searched and max(searched) <= 9 * (500 + 4 * len(SECRET))
    assert error.message.count("s") >= 500


def test_secret_echoed_as_correlation_id_is_scrubbed() -> None:
    body = {"error": "e", "correlation_id": SECRET}
    error = error_from_response(answer(500, body), source=S.APP_SERVICE, secrets=[SECRET])
    assert SECRET not in error.message


def test_scrub_and_snake_case_helpers() -> None:
    assert scrub(f"a {SECRET} b", [SECRET, ""]) == "a *** b"
    assert snake_case("SecretHeaderNotFound") == "secret_header_not_found"
    assert snake_case("invalid_request") == "invalid_request"
    assert snake_case("HTTPError") == "http_error"
    assert snake_case("--") == "unknown_error"


def test_too_large_error_body_is_not_parsed() -> None:
    body = json.dumps({"error": "big", "error_description": "x" * MAX_BODY_BYTES}).encode()
    error = error_from_response(answer(500, body), source=S.APP_SERVICE)
    assert is_failed(error)
    assert error.error_code == "http_500"


# --- properties -----------------------------------------------------------------------------------------------

json_error_bodies = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                ["error", "code", "message", "error_description", "correlationId", "correlation_id"]
            )
            | st.text(max_size=5),
            children,
            max_size=4,
        )
    ),
    max_leaves=8,
).map(lambda value: json.dumps(value).encode())

bodies = st.binary(max_size=300) | json_error_bodies


@settings(max_examples=200, deadline=None)
@given(bodies)
def test_parse_error_body_of_any_bytes_is_an_error_body(body: bytes) -> None:
    parsed = parse_error_body(body)
    assert isinstance(parsed, ErrorBody)
    for value in (parsed.code, parsed.description, parsed.correlation_id):
        assert value is None or isinstance(value, str)


@settings(max_examples=200, deadline=None)
@given(body=bodies, status=st.integers(min_value=100, max_value=599), source=st.sampled_from(ALL_SOURCES))
def test_error_from_response_of_any_bytes_is_a_managed_identity_error(
    body: bytes, status: int, source: S
) -> None:
    error = error_from_response(Response(status, {}, body), source=source, secrets=[SECRET])
    assert isinstance(error, ManagedIdentityError)
    assert isinstance(error.error_code, str)
    assert error.error_code
    assert error.status_code == status
    assert error.source is source


# --- the words of error answers (section 4) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "code", "message"),
    [
        (
            401,
            b'{"error": "Unauthorized", "correlation_id": "c-1"}',
            "unauthorized",
            "App Service managed identity endpoint refused the token request (HTTP 401, Unauthorized) "
            "[correlation id c-1]",
        ),
        (
            302,
            b"{}",
            "unexpected_redirect",
            "App Service managed identity endpoint redirected the token request; redirects are refused (HTTP 302)",
        ),
        (
            204,
            b"{}",
            "invalid_response",
            "App Service managed identity endpoint answered 204 without a usable token: unexpected answer",
        ),
    ],
    ids=["refusal-without-a-specific-rule", "redirect", "2xx-handed-to-the-error-mapping"],
)
def test_the_common_error_answers_say_what_went_wrong_in_these_words(
    status: int, body: bytes, code: str, message: str
) -> None:
    """A refusal without a source's own rule says the endpoint refused the token request; a redirect says
    redirects are refused; a 2xx handed to the error mapping is an unexpected invalid response."""
    error = error_for(status, body, S.APP_SERVICE)
    assert (error.error_code, error.status_code, error.message) == (code, status, message)


def test_a_long_server_code_and_correlation_id_are_cut_to_100_characters() -> None:
    body = b'{"error": "' + b"E" * 150 + b'", "correlation_id": "' + b"c" * 150 + b'"}'
    error = error_for(500, body, S.APP_SERVICE)
    assert error.correlation_id == "c" * 100
    assert error.message == (
        f"App Service managed identity endpoint refused the token request (HTTP 500, {'E' * 100}) "
        f"[correlation id {'c' * 100}]"
    )


def test_an_imds_error_that_is_not_json_says_managed_identity_is_not_available() -> None:
    error = error_from_response(Response(502, {}, b"Bad Gateway"), source=ManagedIdentitySource.IMDS)

    assert error_fields(error) == (
        True,
        "imds_unreachable",
        502,
        ManagedIdentitySource.IMDS,
        "IMDS did not answer like IMDS (the body is not JSON); managed identity is not available here (HTTP 502)",
    )


# --- the words of token answers (section 3) -------------------------------------------------------------------


def _parse(source: ManagedIdentitySource, status: int, body: bytes) -> ManagedIdentityError:
    return raised(lambda: parse_token(Response(status, {}, body), source=source, start=0.0))


def test_an_oversized_token_answer_is_response_too_large_with_its_status_and_source() -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(200, b" " * (MAX_BODY_BYTES + 1)), source=S.APP_SERVICE, start=0.0)
    assert (caught.value.error_code, caught.value.status_code, caught.value.source) == (
        "response_too_large",
        200,
        S.APP_SERVICE,
    )


def test_a_body_over_the_limit_is_refused_in_these_words() -> None:
    error = _parse(ManagedIdentitySource.APP_SERVICE, 200, b" " * (MAX_BODY_BYTES + 1))

    assert error_fields(error) == (
        False,
        "response_too_large",
        200,
        ManagedIdentitySource.APP_SERVICE,
        f"App Service managed identity endpoint answered with a body over {MAX_BODY_BYTES} bytes",
    )


def test_a_non_json_answer_from_imds_is_unavailable_with_its_status_and_source() -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(200, b"<html>"), source=S.IMDS, start=0.0)
    assert (caught.value.error_code, caught.value.status_code, caught.value.source) == (
        "imds_unreachable",
        200,
        S.IMDS,
    )


def test_imds_answering_200_with_html_is_not_imds_in_these_words() -> None:
    error = _parse(ManagedIdentitySource.IMDS, 200, b"<html>a captive portal</html>")

    assert error_fields(error) == (
        True,
        "imds_unreachable",
        200,
        ManagedIdentitySource.IMDS,
        "IMDS answered 200 with a body that is not JSON: this is not IMDS, managed identity is not available here",
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"[1]", "the body is not a JSON object"),
        (b'{"expires_in": 3600}', "the body has no access_token string"),
        (b'{"access_token": "t", "expires_in": "soon"}', "expires_in is not a number of seconds"),
    ],
)
def test_an_unusable_token_answer_is_invalid_response_naming_its_status_and_why(
    body: bytes, why: str
) -> None:
    with pytest.raises(ManagedIdentityError) as caught:
        parse_token(answer(201, body), source=S.CLOUD_SHELL, start=1000.0)
    assert caught.value.error_code == "invalid_response"
    assert caught.value.status_code == 201
    assert caught.value.message == (
        f"Cloud Shell managed identity endpoint answered 201 without a usable token: {why}"
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            b'{"access_token": "a b", "expires_in": 3600}',
            "the access_token holds characters an HTTP header cannot carry",
        ),
        (
            b'{"access_token": "t", "expires_in": 3600, "token_type": "Be arer"}',
            "the token_type is not a printable ASCII word",
        ),
    ],
    ids=["access-token", "token-type"],
)
def test_a_token_a_header_cannot_carry_is_refused_with_its_source_and_status(body: bytes, why: str) -> None:
    error = _parse(ManagedIdentitySource.CLOUD_SHELL, 203, body)

    assert error_fields(error) == (
        False,
        "invalid_response",
        203,
        ManagedIdentitySource.CLOUD_SHELL,
        f"Cloud Shell managed identity endpoint answered 203 without a usable token: {why}",
    )


# --- scrubbing secrets, server error codes --------------------------------------------------------------------


def test_a_secret_of_four_characters_is_scrubbed_from_echoes() -> None:
    assert scrub("echo abcd", ["abcd"]) == "echo ***"


def test_secrets_shorter_than_four_characters_are_not_scrubbed_in_any_form() -> None:
    # "abc" in hex is 616263: scrubbing every short secret's encodings would mangle ordinary text
    assert scrub("code 616263 YWJj", ["abc", ""]) == "code 616263 YWJj"


def test_a_secret_echoed_percent_encoded_character_by_character_is_scrubbed() -> None:
    assert scrub("echo %61%62%63%64 here", ["abcd"]) == "echo *** here"


def test_a_secret_echoed_in_our_percent_encoding_is_scrubbed_leaving_other_escapes_alone() -> None:
    assert scrub("a%20b%2Fcd at 100%25", ["a b/cd"]) == "*** at 100%25"


def test_a_secret_echoed_as_unpadded_base64_is_scrubbed() -> None:
    assert scrub("got YWJjZGU.", ["abcde"]) == "got ***."


def test_every_secret_is_scrubbed_whatever_its_case_and_padding() -> None:
    assert scrub("one ABCD two wxyz three YWJjZGU=", ["abcd", "wxyz", "abcde"]) == "one *** two *** three ***"


# change: the forms are tried in reverse alphabetical order instead of longest first: a secret that starts another
# in another case is found first and leaves the end of the longer one
def test_a_secret_that_starts_another_in_another_case_does_not_leave_the_end_of_the_longer_one() -> None:
    assert scrub("echo ABCDEFGH.", ["abcd", "ABCDEFGH"]) == "echo ***."


# change: the text searched is cut short by the longest form instead of widened by it (with a secret longer than
# the limit, nothing of the text is left)
@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [("error code E42", "error code E42"), ("echo " + "s" * 80 + ".", "echo ***.")],
)
def test_a_secret_longer_than_the_limit_still_leaves_the_text_up_to_the_limit(
    text: str, scrubbed: str
) -> None:
    assert scrub(text, ["s" * 80], 100) == scrubbed


@pytest.mark.parametrize(
    ("secret", "forms"),
    [
        # base64 without padding that ends in 'X': only '=' is stripped, never a base64 character
        ("secreW", {"secreW", "736563726557", "c2VjcmVX"}),
        (
            "a b/c~d",
            {
                "a b/c~d",
                "a%20b%2Fc~d",
                "a+b%2Fc~d",
                "6120622f637e64",
                "YSBiL2N+ZA==",
                "YSBiL2N+ZA",
                "YSBiL2N-ZA==",
                "YSBiL2N-ZA",
            },
        ),
    ],
)
def test_a_secret_is_scrubbed_in_exactly_its_echo_forms(secret: str, forms: set[str]) -> None:
    assert secret_forms(secret) == forms


def test_a_server_error_code_becomes_snake_case_of_at_most_64_characters() -> None:
    assert snake_case("a" * 100) == "a" * 64


# --- through the scripted driver: a 200 without a token -------------------------------------------------------


def test_a_token_answer_without_a_token_is_an_error_of_the_source() -> None:
    clock = Clock()
    body = json.dumps({"expires_in": 3600}).encode()
    script = Script(clock).queue(Response(200, {"content-type": "application/json"}, body))

    error = scripted_failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert error.source is ManagedIdentitySource.APP_SERVICE and error.status_code == 200


# --- through both faces: success bodies that are not tokens ---------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Service Unavailable</body></html>",
        b"not json at all",
        b"[1, 2, 3]",
        b'{"token_type": "Bearer"}',
        b'{"access_token": "", "expires_in": 3600}',
        b'{"access_token": 42, "expires_in": 3600}',
        b'{"access_token": "t", "expires_in": -5}',
        b'{"access_token": "t", "expires_in": 99999999}',
        b'{"access_token": "t"}',
        b'{"access_token": "t", "expires_on": "next tuesday"}',
    ],
)
def test_unusable_success_bodies_are_typed_errors(face: Any, emulator_factory: Any, body: bytes) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, body, {"Content-Type": "text/html"}))

    error = failure(face, emulator)

    assert error.error_code == "invalid_response"
    assert error.source is ManagedIdentitySource.APP_SERVICE


def test_body_over_one_mebibyte_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, b"x" * (1024 * 1024 + 10)))

    assert failure(face, emulator).error_code == "response_too_large"


def test_text_plain_json_is_accepted(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(200, b'{"access_token": "aci-token", "expires_in": "3600"}', {"Content-Type": "text/plain"})
    )
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token == "aci-token"


# --- through both faces: typed errors, unsafe tokens, echoed secrets ------------------------------------------


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
        wire_token_body(token="abc\r\nX-Injected: 1"),
        wire_token_body(token="abc\ndef"),
        wire_token_body(token="abc\x00def"),
        wire_token_body(token="abc def"),
        wire_token_body(token="abc\u00e9"),
        {**wire_token_body(), "token_type": "Bearer\r\nX-Injected: 1"},
        {**wire_token_body(), "token_type": "Bear\x00er"},
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
