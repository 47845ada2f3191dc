"""The drivers' shared conversions (msi_credential/_transport/common.py), checked at their edges (mutation testing).

Socket-free: the functions are called directly, exceptions are built here as the drivers would see them
(azure-core wrapping requests/urllib3/aiohttp errors), TLS is checked over memory BIOs. The end of the section on
reading a response's body goes through both faces (the ``face`` fixture), still without a socket: the credential is
given transports whose responses, made in memory, offer only ``text()``, only ``body()`` or neither.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import http.client
import logging
import os
import ssl
import zlib
from typing import Any, Optional

import aiohttp
import pytest
import requests
import trustme
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from urllib3.exceptions import MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential._engine.effects import MAX_BODY_BYTES, Request, TransportFailure
from msi_credential._transport import common
from msi_credential._transport.common import (
    BodyReader,
    UndecodableBody,
    UserTransport,
    body_too_large,
    encode_query,
    environment_proxy_applies,
    failure_detail,
    is_pin_failure,
    request_url,
    to_http_request,
    token_proxy_context,
    transport_failure,
    user_proxies,
)

from ..faces.support import STORAGE, NoConnectionTransport

LIMIT = MAX_BODY_BYTES + 1
PIN = TransportFailure("pin_mismatch", "certificate thumbprint mismatch")

# ------------------------------------------------------------------------------------------ request building


def test_user_proxies_passes_the_proxies_keyword_and_nothing_when_it_is_absent_or_empty() -> None:
    proxies = {"https": "http://proxy.test:3128"}
    assert user_proxies({"proxies": proxies, "other": 1}) == {"proxies": proxies}
    assert user_proxies({}) == {}
    assert user_proxies({"proxies": None}) == {}
    assert user_proxies({"proxies": {}}) == {}


def test_encode_query_keeps_the_safe_characters_in_keys_and_values_and_encodes_the_rest() -> None:
    safe = "/:@?!$'()*,"
    assert encode_query(()) == ""
    assert encode_query((("api-version", "2019-08-01"), ("resource", "https://vault.azure.net/"))) == (
        "api-version=2019-08-01&resource=https://vault.azure.net/"
    )
    assert encode_query(((safe, safe),)) == f"{safe}={safe}"
    assert encode_query((("a b&c", "d=e+f#g;h%i é"),)) == "a%20b%26c=d%3De%2Bf%23g%3Bh%25i%20%C3%A9"


def test_request_url_appends_the_query_with_question_mark_or_ampersand_and_leaves_a_bare_url() -> None:
    params = (("resource", "https://x"),)
    assert request_url(Request("GET", "https://h/p?a=1")) == "https://h/p?a=1"
    assert request_url(Request("GET", "https://h/p", params=params)) == "https://h/p?resource=https://x"
    assert (
        request_url(Request("GET", "https://h/p?a=1", params=params)) == "https://h/p?a=1&resource=https://x"
    )


def test_to_http_request_carries_method_url_headers_and_the_form_only_when_there_is_one() -> None:
    get = to_http_request(Request("GET", "https://h/p", params=(("k", "v"),), headers={"Metadata": "true"}))
    assert (get.method, get.url, dict(get.headers), get.content) == (
        "GET",
        "https://h/p?k=v",
        {"Metadata": "true"},
        None,
    )
    post = to_http_request(Request("POST", "https://h/t", form={"grant_type": "x y"}))
    assert (post.method, post.url, post.content) == ("POST", "https://h/t", {"grant_type": "x y"})
    assert post.headers["Content-Type"] == "application/x-www-form-urlencoded"


# ------------------------------------------------------------------------------------------------ bodies


def _read(headers: dict[str, str], *chunks: bytes) -> bytes:
    reader = BodyReader(headers)
    for chunk in chunks:
        reader.feed(chunk)
    return reader.finish()


BODY = b'{"access_token": "t", "expires_in": "3600"}'
RAW_DEFLATE = zlib.compressobj(wbits=-zlib.MAX_WBITS)
RAW = RAW_DEFLATE.compress(BODY) + RAW_DEFLATE.flush()
# A raw deflate stream (a non-final stored block, then an empty final one) whose first byte has the zlib
# method nibble 8 but whose first two bytes fail the zlib header check: it must be read as raw deflate.
STORED = (
    b"\x08" + (5).to_bytes(2, "little") + (0xFFFA).to_bytes(2, "little") + b"hello" + b"\x01\x00\x00\xff\xff"
)


def test_an_identity_body_is_the_chunks_joined_in_order_and_its_size_their_sum() -> None:
    for headers in ({}, {"Content-Encoding": "identity"}, {"Content-Encoding": "br"}):
        reader = BodyReader(headers)
        assert reader.feed(b"ab") is False
        assert reader.feed(b"") is False
        assert reader.feed(b"cde") is False
        assert reader.size == 5
        assert reader.finish() == b"abcde"


def test_no_chunk_at_all_is_an_empty_body() -> None:
    assert BodyReader({"content-encoding": "gzip"}).finish() == b""


@pytest.mark.parametrize("value", ["gzip", " GZIP ", "x-gzip", "X-Gzip"])
def test_gzip_and_x_gzip_bodies_are_decoded_in_any_case_and_split_into_chunks(value: str) -> None:
    data = gzip.compress(BODY)
    assert _read({"Content-Encoding": value}, data) == BODY
    assert _read({"content-encoding": value}, b"", data[:2], data[2:7], data[7:]) == BODY


def test_a_gzip_body_already_decoded_by_the_session_is_taken_as_it_is() -> None:
    assert _read({"Content-Encoding": "gzip"}, BODY[:3], BODY[3:]) == BODY


def test_a_zlib_deflate_body_is_decoded_whole_or_with_a_two_byte_first_chunk() -> None:
    data = zlib.compress(BODY)
    assert _read({"Content-Encoding": "deflate"}, data) == BODY
    assert _read({"Content-Encoding": "deflate"}, data[:2], data[2:]) == BODY


def test_a_raw_deflate_body_is_decoded_whole_or_byte_by_byte() -> None:
    assert RAW[:1] not in (b"{", b"[", b"<", b" ")
    assert _read({"Content-Encoding": "deflate"}, RAW) == BODY
    assert _read({"Content-Encoding": "deflate"}, *(RAW[i : i + 1] for i in range(len(RAW)))) == BODY


def test_a_raw_deflate_body_with_method_nibble_8_but_no_zlib_header_is_read_as_raw_deflate() -> None:
    assert _read({"Content-Encoding": "deflate"}, STORED) == b"hello"


@pytest.mark.parametrize("body", [b'{"a": 1}', b'["a"]', b"<html/>", b' \r\n\t{"a": 1}'])
def test_a_deflate_labelled_body_that_is_json_or_markup_is_taken_as_it_is(body: bytes) -> None:
    assert _read({"Content-Encoding": "deflate"}, body) == body


def test_a_broken_gzip_stream_is_undecodable_when_fed_and_a_truncated_one_when_finished() -> None:
    with pytest.raises(UndecodableBody):
        BodyReader({"Content-Encoding": "gzip"}).feed(b"\x1f\x8b" + b"\xff" * 20)
    truncated = BodyReader({"Content-Encoding": "gzip"})
    truncated.feed(gzip.compress(BODY)[:-6])
    with pytest.raises(UndecodableBody):
        truncated.finish()


def test_an_identity_body_of_the_limit_is_not_full_and_one_byte_more_is() -> None:
    reader = BodyReader({})
    assert reader.feed(b"x" * MAX_BODY_BYTES) is False
    assert reader.full is False
    assert body_too_large(reader.size) is False
    assert reader.feed(b"y") is True
    assert (reader.full, reader.size, body_too_large(reader.size)) == (True, LIMIT, True)
    assert reader.feed(b"") is True
    assert reader.finish() == b"x" * MAX_BODY_BYTES + b"y"


def test_body_too_large_is_over_max_body_bytes_only() -> None:
    assert [body_too_large(n) for n in (0, MAX_BODY_BYTES, LIMIT)] == [False, False, True]


def test_a_gzip_body_decoding_to_the_limit_is_read_whole() -> None:
    reader = BodyReader({"Content-Encoding": "gzip"})
    assert reader.feed(gzip.compress(b"\0" * MAX_BODY_BYTES)) is False
    assert reader.finish() == b"\0" * MAX_BODY_BYTES


def test_a_gzip_bomb_in_one_chunk_stops_at_the_limit_plus_one_byte() -> None:
    for decoded in (LIMIT, 2 * MAX_BODY_BYTES):
        reader = BodyReader({"Content-Encoding": "gzip"})
        assert reader.feed(gzip.compress(b"\0" * decoded)) is True
        assert (reader.full, reader.size) == (True, LIMIT)
        assert reader.finish() == b"\0" * LIMIT


def test_a_gzip_bomb_in_small_chunks_stops_at_the_limit_plus_one_byte() -> None:
    data = gzip.compress(os.urandom(64) + b"\0" * (2 * MAX_BODY_BYTES))
    reader = BodyReader({"Content-Encoding": "gzip"})
    assert reader.feed(data[:200]) is False
    assert 0 < reader.size < LIMIT
    stopped = [reader.feed(data[i : i + 200]) for i in range(200, len(data), 200)]
    assert stopped[-1] is True
    assert (reader.full, reader.size) == (True, LIMIT)
    assert len(reader.finish()) == LIMIT


# --------------------------------------------------------------------------------------- failure details

LEVELS = [type(f"Level{i}Error", (Exception,), {}) for i in range(12)]


def _level(index: int, text: str) -> Exception:
    kind = LEVELS[index]
    error: Exception = kind(text)
    return error


def _linked(depth: int, link: str, texts: Optional[dict[int, str]] = None) -> BaseException:
    """Level0Error, whose chain through `link` goes down to Level{depth}Error."""
    errors = [LEVELS[i]((texts or {}).get(i, "plain")) for i in range(depth + 1)]
    for outer, inner in zip(errors, errors[1:]):
        setattr(outer, link, inner)
    return errors[0]


@pytest.mark.parametrize("link", ["inner_exception", "__cause__", "__context__"])
def test_failure_detail_follows_any_link_eight_steps_and_no_more(link: str) -> None:
    assert failure_detail(_linked(0, link)) == "Level0Error"
    assert failure_detail(_linked(7, link)) == "Level7Error"
    assert failure_detail(_linked(8, link)) == "Level8Error"
    assert failure_detail(_linked(9, link)) == "Level8Error"


def test_failure_detail_prefers_inner_exception_then_cause_then_context() -> None:
    error = _level(0, "x")
    error.inner_exception = _level(1, "x")  # type: ignore[attr-defined]
    error.__cause__ = _level(2, "x")
    error.__context__ = _level(3, "x")
    assert failure_detail(error) == "Level1Error"
    error.inner_exception = None  # type: ignore[attr-defined]
    assert failure_detail(error) == "Level2Error"
    error.__cause__ = None
    assert failure_detail(error) == "Level3Error"


def test_failure_detail_stops_at_an_exception_that_names_itself() -> None:
    error = _level(0, "x")
    error.__cause__ = error
    assert failure_detail(error) == "Level0Error"


def test_failure_detail_names_timeouts_without_their_text() -> None:
    assert failure_detail(TimeoutError(110, "Connection timed out after 2 s")) == "TimeoutError: timed out"


def test_failure_detail_gives_the_errno_and_the_os_words_or_the_error_own_strerror() -> None:
    assert failure_detail(ConnectionRefusedError(111, "refused by peer")) == (
        "ConnectionRefusedError: [Errno 111] refused by peer"
    )
    bare = OSError()
    bare.errno = 111
    assert failure_detail(bare) == f"OSError: [Errno 111] {os.strerror(111)}"
    assert failure_detail(OSError("no errno")) == "OSError"


def test_failure_detail_gives_a_tls_reason_or_tls_failure() -> None:
    with_reason = ssl.SSLError("x")
    with_reason.reason = "CERTIFICATE_VERIFY_FAILED"  # type: ignore[misc]
    assert failure_detail(with_reason) == "SSLError: CERTIFICATE_VERIFY_FAILED"
    without = ssl.SSLError("x")
    without.reason = None  # type: ignore[misc]
    assert failure_detail(without) == "SSLError: TLS failure"


def test_failure_detail_never_quotes_the_exception_text() -> None:
    assert failure_detail(http.client.BadStatusLine('{"access_token": "secret"}')) == "BadStatusLine"


@pytest.mark.parametrize("link", ["inner_exception", "__cause__", "__context__"])
def test_is_pin_failure_looks_ten_exceptions_deep_in_any_case(link: str) -> None:
    assert is_pin_failure(_linked(0, link, {0: "Fingerprints did not match"})) is True
    assert is_pin_failure(_linked(9, link, {9: "server certificate FINGERPRINT"})) is True
    assert is_pin_failure(_linked(10, link, {10: "fingerprint"})) is False
    assert is_pin_failure(_linked(10, link)) is False


def test_is_pin_failure_follows_inner_exception_then_cause_then_context() -> None:
    error = _level(0, "x")
    error.inner_exception = _level(1, "x")  # type: ignore[attr-defined]
    error.__cause__ = _level(2, "fingerprint")
    assert is_pin_failure(error) is False
    error.inner_exception = None  # type: ignore[attr-defined]
    assert is_pin_failure(error) is True
    error.__cause__ = _level(2, "x")
    error.__context__ = _level(3, "fingerprint")
    assert is_pin_failure(error) is False
    error.__cause__ = None
    assert is_pin_failure(error) is True


# ------------------------------------------------------------------------------------- transport failures


def _caught(function: Any) -> BaseException:
    try:
        function()
    except BaseException as error:
        return error
    raise AssertionError("nothing was raised")


def _raise_as_requests_and_azure_core(
    urllib3_error: Exception, requests_error: type[requests.RequestException], azure_error: type[Exception]
) -> None:
    """What requests raises for ``urllib3_error`` (while it is being handled, so it is the context), wrapped as
    azure-core's RequestsTransport wraps it."""
    try:
        raise requests_error(urllib3_error)
    except requests_error as err:
        raise azure_error(err, error=err) from err


def _requests_refused() -> None:
    """RequestsTransport when nothing listens: ConnectionRefusedError under urllib3's and requests' errors."""
    try:
        try:
            try:
                raise ConnectionRefusedError(111, "Connection refused")
            except OSError as refused:
                raise NewConnectionError(
                    None, f"Failed to establish a new connection: {refused}"
                ) from refused  # type: ignore[arg-type]
        except NewConnectionError as new:
            raise MaxRetryError(None, "/msi/token", new) from new  # type: ignore[arg-type]
    except MaxRetryError as retries:
        _raise_as_requests_and_azure_core(retries, requests.ConnectionError, ServiceRequestError)


def _requests_pin_mismatch() -> None:
    reason = Urllib3SSLError('Fingerprints did not match. Expected "aa", got "bb"')
    err = requests.exceptions.SSLError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]
    raise ServiceRequestError(err, error=err)


def _requests_read_timeout() -> None:
    try:
        try:
            raise TimeoutError("timed out")
        except TimeoutError as timeout:
            message = "Read timed out. (read timeout=10.0)"
            raise ReadTimeoutError(None, "/", message) from timeout  # type: ignore[arg-type]
    except ReadTimeoutError as read:
        _raise_as_requests_and_azure_core(read, requests.ReadTimeout, ServiceResponseTimeoutError)


def _connect_timeout() -> None:
    try:
        raise TimeoutError("timed out")
    except TimeoutError as err:
        raise ServiceRequestTimeoutError(err, error=err) from err


def _aiohttp_refused() -> None:
    err = aiohttp.ClientOSError(111, "Connect call failed ('127.0.0.1', 9)")
    raise ServiceRequestError(err, error=err) from err


class _AioMismatch(aiohttp.ServerFingerprintMismatch):
    def __str__(self) -> str:  # as msi_credential._transport.aio's pin raises it
        return "server certificate fingerprint does not match the pinned thumbprint"


def _aiohttp_pin_mismatch() -> None:
    err = _AioMismatch(b"a", b"b", "127.0.0.1", 443)
    raise ServiceRequestError(err, error=err) from err


def _response_pin_mismatch() -> None:
    err = Urllib3SSLError("Fingerprints did not match")
    raise ServiceResponseError(err, error=err) from err


@pytest.mark.parametrize(
    ("raise_it", "extra", "expected"),
    [
        (_connect_timeout, (), TransportFailure("connect_timeout", "TimeoutError: timed out")),
        (
            _requests_refused,
            (),
            TransportFailure("connect", "ConnectionRefusedError: [Errno 111] Connection refused"),
        ),
        (
            _aiohttp_refused,
            (),
            TransportFailure("connect", "ClientOSError: [Errno 111] Connect call failed ('127.0.0.1', 9)"),
        ),
        (_requests_pin_mismatch, (), PIN),
        (_aiohttp_pin_mismatch, (), PIN),
        (_requests_read_timeout, (), TransportFailure("read_timeout", "TimeoutError: timed out")),
        (
            lambda: (_ for _ in ()).throw(asyncio.TimeoutError()),
            (),
            TransportFailure("read_timeout", "TimeoutError: timed out"),
        ),
        (_response_pin_mismatch, (), PIN),
        (
            lambda: (_ for _ in ()).throw(
                ServiceResponseError("incomplete", error=ConnectionResetError(104, "reset"))
            ),
            (),
            TransportFailure("read", "ConnectionResetError: [Errno 104] reset"),
        ),
        (
            lambda: (_ for _ in ()).throw(requests.ConnectionError("x")),
            (),
            TransportFailure("read", "ConnectionError"),
        ),
        (
            lambda: (_ for _ in ()).throw(BrokenPipeError(32, "pipe")),
            (),
            TransportFailure("read", "BrokenPipeError: [Errno 32] pipe"),
        ),
        (
            lambda: (_ for _ in ()).throw(aiohttp.ClientPayloadError("Response payload is not completed")),
            (aiohttp.ClientError,),
            TransportFailure("read", "ClientPayloadError"),
        ),
        (lambda: (_ for _ in ()).throw(aiohttp.ClientPayloadError("incomplete")), (), None),
        (lambda: (_ for _ in ()).throw(ValueError("not a network failure")), (), None),
    ],
    ids=[
        "connect-timeout",
        "requests-refused",
        "aiohttp-refused",
        "requests-pin",
        "aiohttp-pin",
        "requests-read-timeout",
        "asyncio-timeout",
        "response-pin",
        "azure-read",
        "requests-read",
        "os-error-read",
        "aiohttp-payload-with-extra",
        "aiohttp-payload-without-extra",
        "value-error",
    ],
)
def test_transport_failure_gives_the_kind_and_detail_the_driver_sees(
    raise_it: Any, extra: tuple[type[BaseException], ...], expected: Optional[TransportFailure]
) -> None:
    assert transport_failure(_caught(raise_it), *extra) == expected


# -------------------------------------------------------------------------------------------------- TLS

AUTHORITY = trustme.CA()
SERVER_CERT = AUTHORITY.issue_cert("proxy.test")


def _handshake(client_context: ssl.SSLContext, name: str = "proxy.test") -> Any:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    SERVER_CERT.configure_cert(server_context)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(c_in, c_out, server_hostname=name)
    server = server_context.wrap_bio(s_in, s_out, server_side=True)
    for _ in range(10):
        try:
            client.do_handshake()
            return client.getpeercert()["subjectAltName"]
        except ssl.SSLWantReadError:
            s_in.write(c_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server.do_handshake()
        c_in.write(s_out.read())
    raise AssertionError("no handshake")


def test_token_proxy_context_trusts_the_cluster_ca_only_and_checks_the_name() -> None:
    context = token_proxy_context(AUTHORITY.cert_pem.bytes().decode())
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.cert_store_stats()["x509_ca"] == 1
    assert _handshake(context) == (("DNS", "proxy.test"),)
    with pytest.raises(ssl.SSLCertVerificationError) as wrong_name:
        _handshake(context, "other.test")
    assert "Hostname mismatch" in str(wrong_name.value)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(token_proxy_context(trustme.CA().cert_pem.bytes().decode()))


@pytest.mark.parametrize("ca_pem", [None, ""])
def test_token_proxy_context_without_a_ca_uses_the_system_cas(ca_pem: Optional[str]) -> None:
    context = token_proxy_context(ca_pem)
    assert (context.verify_mode, context.check_hostname) == (ssl.CERT_REQUIRED, True)
    assert context.cert_store_stats() == ssl.create_default_context().cert_store_stats()
    with pytest.raises(ssl.SSLCertVerificationError) as refused:
        _handshake(context)
    error = refused.value
    assert error.strerror.startswith("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    assert failure_detail(error) == f"SSLCertVerificationError: [Errno 1] {error.strerror}"


# ---------------------------------------------------------------------------------------- user transport

REASONS = {
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


def test_user_transport_warns_once_per_reason_in_these_words(caplog: pytest.LogCaptureFixture) -> None:
    given = object()
    user = UserTransport(given)
    assert (user.transport, user.closed) == (given, False)
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        for reason in ("pin", "token_proxy", "proxy", "session_proxy", "pin", "proxy", "session_proxy"):
            user.warn_once(reason)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("msi_credential", logging.WARNING, REASONS[reason])
        for reason in ("pin", "token_proxy", "proxy", "session_proxy")
    ]


def test_no_user_transport_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        UserTransport(None).warn_once("pin")
    assert caplog.records == []


def test_check_open_passes_until_closed_then_refuses_in_these_words() -> None:
    user = UserTransport(object())
    assert user.check_open() is None
    user.closed = True
    with pytest.raises(ManagedIdentityError) as caught:
        user.check_open()
    error = caught.value
    assert not isinstance(error, CredentialUnavailableError)
    assert (error.error_code, error.status_code, error.source, error.message) == (
        "credential_closed",
        None,
        None,
        "the credential was closed, and with it the transport it was given; "
        "build a new credential (with a new transport) to get tokens",
    )


# ------------------------------------------------------------------------------------ environment proxies


@pytest.fixture
def no_proxy_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name == "REQUEST_METHOD":
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.mark.parametrize(
    ("variables", "url", "applies"),
    [
        ({}, "https://h.test/t", False),
        ({"HTTPS_PROXY": "http://p:3128"}, "https://h.test/t", True),
        ({"https_proxy": "http://p:3128"}, "https://h.test/t", True),
        ({"HTTPS_PROXY": "http://p:3128"}, "http://h.test/t", False),
        ({"HTTP_PROXY": "http://p:3128"}, "http://h.test/t", True),
        ({"ALL_PROXY": "http://p:3128"}, "http://h.test/t", True),
        ({"all_proxy": "http://p:3128"}, "https://h.test/t", True),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "h.test"}, "https://h.test/t", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": ".test"}, "https://h.test/t", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "*"}, "https://h.test/t", False),
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "other.test"}, "https://h.test/t", True),
        ({"ALL_PROXY": "http://p:3128", "NO_PROXY": "h.test"}, "http://h.test/t", False),
        # a URL without a host name matches no NO_PROXY name (the empty host is not replaced by any name)
        ({"HTTPS_PROXY": "http://p:3128", "NO_PROXY": "localhost,xxxx"}, "https://:8443/t", True),
        ({"HTTPS_PROXY": "http://p:3128"}, "https://[::1/t", False),
    ],
)
def test_environment_proxy_applies_for_the_scheme_or_all_unless_no_proxy_bypasses(
    no_proxy_environment: pytest.MonkeyPatch, variables: dict[str, str], url: str, applies: bool
) -> None:
    for name, value in variables.items():
        no_proxy_environment.setenv(name, value)
    assert environment_proxy_applies(url) is applies


def test_module_constants_name_every_proxy_scheme_as_none() -> None:
    assert common.NO_PROXIES == {"http": None, "https": None, "all": None}


# ------------------------------------------------------------------------------ reading a response's body


def test_consumed_body_is_what_requests_already_read_and_none_otherwise() -> None:
    from types import SimpleNamespace

    read = requests.Response()
    read._content, read._content_consumed = b'{"error": "moved"}', True
    unread = requests.Response()
    unread._content, unread._content_consumed = False, False
    assert common.consumed_body(SimpleNamespace(internal_response=read)) == b'{"error": "moved"}'
    assert common.consumed_body(SimpleNamespace(internal_response=unread)) is None
    assert common.consumed_body(SimpleNamespace(internal_response=object())) is None
    assert common.consumed_body(object()) is None


def test_stream_method_is_iter_raw_else_iter_bytes_when_the_class_defines_it() -> None:
    from unittest import mock

    class Raw:
        def iter_raw(self) -> Any: ...

        def iter_bytes(self) -> Any: ...

    class Decoded:
        def iter_bytes(self) -> Any: ...

    raw, decoded = Raw(), Decoded()
    assert common.stream_method(raw) == raw.iter_raw
    assert common.stream_method(decoded) == decoded.iter_bytes
    assert common.stream_method(mock.Mock()) is None  # a mock makes up iter_raw on access: not a stream
    assert common.stream_method(object()) is None


def test_whole_body_takes_bytes_from_body_and_str_from_text_only() -> None:
    assert common.whole_body("body", b"ab") == b"ab"
    assert common.whole_body("body", bytearray(b"ab")) == b"ab"
    assert common.whole_body("text", "é") == "é".encode()
    assert common.whole_body("body", "ab") is None
    assert common.whole_body("text", b"ab") is None
    assert common.whole_body("body", None) is None


def test_whole_body_methods_are_body_then_text_those_callable() -> None:
    from types import SimpleNamespace

    def body() -> bytes:
        return b""

    def text() -> str:
        return ""

    assert common.whole_body_methods(SimpleNamespace(body=body, text=text)) == [
        ("body", body),
        ("text", text),
    ]
    assert common.whole_body_methods(SimpleNamespace(body=b"", text=text)) == [("text", text)]
    assert common.whole_body_methods(object()) == []


def test_an_unreadable_response_is_a_failed_error_naming_its_class_in_these_words() -> None:
    class OldResponse:
        pass

    error = common.unreadable_response(OldResponse())
    assert isinstance(error, ManagedIdentityError) and not isinstance(error, CredentialUnavailableError)
    assert error.error_code == "transport_unsupported"
    assert str(error).startswith(
        "the supplied transport's response (OldResponse) offers no way to read its body: none of iter_raw(), "
        "iter_bytes(), body() returning bytes or text() returning str"
    )


# Through both faces: a supplied transport whose responses offer only text() or body() (azure-core's older
# responses, azure-identity's test doubles) gets a token, within the one-mebibyte bound, and one that offers no way
# to read the body is a typed error.


class _BodyOnlyResponse:
    """What azure-core's older response classes and test doubles offer: a status, headers and ``text()`` or
    ``body()`` (per ``offer``), no ``iter_raw()``, no ``close()``."""

    def __init__(self, request: Any, body: bytes, offer: str) -> None:
        self.request = request
        self.status_code = 200
        self.headers = {"Content-Type": "application/json"}
        self.content_type = "application/json"
        if offer == "text":
            self.text = lambda encoding=None: body.decode("utf-8")
        elif offer == "body":
            self.body = lambda: body


def _token_body() -> bytes:
    import json
    import time

    expires_on = int(time.time()) + 3600
    return json.dumps(
        {
            "access_token": "token-from-a-minimal-transport",
            "expires_in": "3600",
            "expires_on": str(expires_on),
            "resource": "https://storage.azure.com",
            "token_type": "Bearer",
        }
    ).encode()


def _minimal_response(request: Any, offer: str, body: bytes | None) -> Any:
    body = _token_body() if body is None else body
    if offer == "mock":  # azure-identity's own tests: a Mock with status_code, headers and a text lambda
        from unittest import mock

        text = body.decode()
        response = mock.Mock(status_code=200, headers={"content-type": "application/json"})
        response.text = lambda encoding=None: text
        return response
    return _BodyOnlyResponse(request, body, offer)


class MinimalTransport(NoConnectionTransport):
    """A sync transport whose responses offer what ``offer`` says (see ``_minimal_response``)."""

    def __init__(self, offer: str, body: bytes | None = None) -> None:
        self.offer = offer
        self.body = body

    def send(self, request: Any, **kwargs: Any) -> Any:
        return _minimal_response(request, self.offer, self.body)


def _minimal_async_transport(offer: str, body: bytes | None = None) -> Any:
    from azure.core.pipeline.transport import AsyncHttpTransport

    class MinimalAsyncTransport(AsyncHttpTransport):  # type: ignore[type-arg]
        async def __aenter__(self) -> MinimalAsyncTransport:
            return self

        async def __aexit__(self, *args: Any) -> None:
            pass

        async def open(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def send(self, request: Any, **kwargs: Any) -> Any:
            return _minimal_response(request, offer, body)

    return MinimalAsyncTransport()


@pytest.mark.parametrize("offer", ["text", "body", "mock"])
def test_supplied_transport_whose_responses_only_offer_text_or_body_gets_a_token(
    face: Any, offer: str
) -> None:
    transport = _minimal_async_transport(offer) if face.is_async else MinimalTransport(offer)
    credential = face.credential(transport=transport)

    assert credential.get_token(STORAGE).token == "token-from-a-minimal-transport"


def test_supplied_transport_whose_responses_offer_no_body_is_a_typed_error(face: Any) -> None:
    transport = _minimal_async_transport("nothing") if face.is_async else MinimalTransport("nothing")
    credential = face.credential(transport=transport)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "transport_unsupported"
    assert "_BodyOnlyResponse" in str(caught.value)
    assert "iter_raw()" in str(caught.value)


@pytest.mark.parametrize("offer", ["text", "body"])
def test_supplied_transport_body_only_answer_over_one_mebibyte_is_refused(face: Any, offer: str) -> None:
    body = b'{"access_token": "' + b"x" * (1024 * 1024) + b'", "expires_in": "3600"}'
    transport = _minimal_async_transport(offer, body) if face.is_async else MinimalTransport(offer, body)
    credential = face.credential(transport=transport)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "response_too_large"
