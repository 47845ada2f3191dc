"""ManagedIdentityAuth on a real requests session against a local HTTPS server (trustme certificates)."""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from azure.core.credentials import AccessTokenInfo
from azure.core.exceptions import ServiceRequestError
from hypothesis import given
from hypothesis import strategies as st

from msi_credential import ManagedIdentityAuth, ManagedIdentityCredential
from msi_credential._integrations import MAX_CHALLENGE_CHARS, claims_from_challenge, parse_challenges
from msi_credential.emulator import Emulator

from .https_stand_in import CAE_CLAIMS, Answer, Call, HttpsServer, Tls, claims_challenge

ARM = "https://management.azure.com/.default"


class Service:
    """An Entra-protected API: accepts the emulator's tokens for ARM unless revoked (then a CAE challenge)."""

    def __init__(self, tls: Tls) -> None:
        self.revoked: set[str] = set()
        self.always_challenge = False
        self.plain_401 = False
        self.redirect_to: str | None = None
        self.challenge: str | None = None  # a WWW-Authenticate to answer every request with, as a 401
        self.server = HttpsServer(tls, self.handle)

    def handle(self, call: Call) -> Answer:
        token = call.bearer
        if self.redirect_to is not None:
            return Answer(302, "", {"Location": self.redirect_to + call.path})
        if self.challenge is not None:
            return Answer(401, "no", {"WWW-Authenticate": self.challenge})
        if self.plain_401:
            return Answer(401, "no", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if token is None:
            return Answer(401, "no token", {"WWW-Authenticate": 'Bearer realm=""'})
        if self.always_challenge or token in self.revoked:
            return Answer(401, "revoked", {"WWW-Authenticate": claims_challenge(CAE_CLAIMS)})
        return Answer(200, {"method": call.method, "body": call.body.decode("utf-8", "replace")})

    @property
    def calls(self) -> list[Call]:
        return self.server.calls


@pytest.fixture(scope="module")
def tls() -> Iterator[Tls]:
    files = Tls()
    yield files
    files.cleanup()


@pytest.fixture
def service(tls: Tls) -> Iterator[Service]:
    running = Service(tls)
    yield running
    running.server.stop()


@pytest.fixture
def emulator(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("imds")
    return started


@pytest.fixture
def credential(emulator: Emulator) -> Iterator[ManagedIdentityCredential]:
    with ManagedIdentityCredential(_environ=emulator.environ, share_cache=False) as built:
        yield built


def session_for(tls: Tls, auth: Any) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxies: loopback only
    session.verify = tls.ca_path
    session.auth = auth
    return session


def test_bearer_header_from_the_cache_one_token_for_many_requests(
    tls: Tls, service: Service, emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        for _ in range(10):
            assert session.get(service.server.url + "/subscriptions").status_code == 200

    assert emulator.tokens_issued == 1
    assert {call.bearer for call in service.calls} == {emulator.issued_tokens()[0]}


@pytest.mark.parametrize("source", ["imds", "service_fabric"])
def test_claims_challenge_gets_a_fresh_token_and_retries_once(
    tls: Tls, service: Service, emulator_factory: Any, source: str
) -> None:
    emulator = emulator_factory(source)
    with (
        ManagedIdentityCredential(_environ=emulator.environ, share_cache=False) as credential,
        session_for(tls, ManagedIdentityAuth(credential, ARM)) as session,
    ):
        assert session.get(service.server.url + "/a").status_code == 200
        first = emulator.issued_tokens()[0]
        service.revoked.add(first)

        response = session.post(service.server.url + "/b", data=b'{"x": 1}')

        assert response.status_code == 200
        assert response.json() == {"method": "POST", "body": '{"x": 1}'}  # the body went again
        assert [r.status_code for r in response.history] == [401]
        assert emulator.tokens_issued == 2
        second = emulator.issued_tokens()[1]
        assert [call.bearer for call in service.calls] == [first, first, second]
        # the fresh token is the cached one from now on
        assert session.get(service.server.url + "/c").status_code == 200
        assert service.calls[-1].bearer == second
        assert emulator.tokens_issued == 2
    if source == "service_fabric":  # a source with revocation hears which token to replace
        refresh = emulator.requests[-1].query.get("token_sha256_to_refresh")
        assert refresh == hashlib.sha256(first.encode()).hexdigest()


def test_a_second_challenge_is_returned_not_retried_again(
    tls: Tls, service: Service, emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    service.always_challenge = True
    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        response = session.get(service.server.url + "/a")

    assert response.status_code == 401
    assert len(service.calls) == 2
    assert emulator.tokens_issued == 2


def test_a_401_without_a_claims_challenge_is_returned_as_is(
    tls: Tls, service: Service, emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    service.plain_401 = True
    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        response = session.get(service.server.url + "/a")

    assert response.status_code == 401
    assert len(service.calls) == 1
    assert emulator.tokens_issued == 1


def test_a_streamed_body_that_cannot_be_replayed_is_not_retried(
    tls: Tls, service: Service, emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    service.always_challenge = True

    def stream() -> Iterator[bytes]:
        yield b"part one, "
        yield b"part two"

    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        response = session.post(service.server.url + "/upload", data=stream())

    assert response.status_code == 401
    assert len(service.calls) == 1
    assert service.calls[0].body == b"part one, part two"
    assert emulator.tokens_issued == 1  # no fresh token for a retry that cannot happen


def test_a_seekable_file_body_is_replayed_from_where_it_started(
    tls: Tls, service: Service, emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        session.get(service.server.url + "/warm")
        service.revoked.add(emulator.issued_tokens()[0])
        body = io.BytesIO(b"skip:payload")
        body.seek(5)

        response = session.put(service.server.url + "/file", data=body)

    assert response.status_code == 200
    assert [call.body for call in service.calls[1:]] == [b"payload", b"payload"]


def test_the_token_is_never_logged(
    tls: Tls,
    service: Service,
    emulator: Emulator,
    credential: ManagedIdentityCredential,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    auth = ManagedIdentityAuth(credential, ARM)
    with session_for(tls, auth) as session:
        session.get(service.server.url + "/a")
        service.revoked.add(emulator.issued_tokens()[0])
        session.get(service.server.url + "/b")

    assert emulator.tokens_issued == 2
    assert any("claims challenge" in record.getMessage() for record in caplog.records)
    text = caplog.text + repr(auth)
    for token in emulator.issued_tokens():
        assert token not in text
        assert token.split(".")[1] not in text


def test_a_foreign_credential_gets_the_claims_through_get_token_info(tls: Tls, service: Service) -> None:
    class Foreign:
        def __init__(self) -> None:
            self.options: list[Any] = []

        def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
            self.options.append(options)
            return AccessTokenInfo(f"foreign-{len(self.options)}", 2_000_000_000)

    foreign = Foreign()
    service.revoked.add("foreign-1")
    with session_for(tls, ManagedIdentityAuth(foreign, ARM)) as session:
        response = session.get(service.server.url + "/a")

    assert response.status_code == 200
    assert foreign.options == [None, {"claims": CAE_CLAIMS}]


def test_no_token_follows_a_redirect_to_another_origin_that_challenges(
    tls: Tls, service: Service, emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    elsewhere = Service(tls)
    elsewhere.always_challenge = True
    service.redirect_to = elsewhere.server.url
    try:
        with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
            response = session.get(service.server.url + "/moved")
    finally:
        elsewhere.server.stop()

    assert response.status_code == 401
    assert [call.bearer for call in elsewhere.calls] == [
        None
    ]  # requests dropped it, and no retry put it back
    assert emulator.tokens_issued == 1


@pytest.mark.parametrize("url", ["http://example.com/a", "http://10.0.0.1/a", "ftp://example.com/a"])
def test_no_token_is_attached_to_a_request_without_tls(
    emulator: Emulator, credential: ManagedIdentityCredential, url: str
) -> None:
    request = requests.Request("GET", url, params={"sig": "s3cret"}).prepare()

    with pytest.raises(ServiceRequestError, match="non-TLS protected") as raised:
        ManagedIdentityAuth(credential, ARM)(request)

    assert "Authorization" not in request.headers
    assert emulator.tokens_issued == 0  # refused before a token was fetched
    assert "s3cret" not in str(raised.value)


def test_no_token_goes_over_http_through_a_session(
    emulator: Emulator, credential: ManagedIdentityCredential
) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.auth = ManagedIdentityAuth(credential, ARM)
        with pytest.raises(ServiceRequestError, match="non-TLS protected"):
            session.get("http://user:pass@example.com/a")  # raised while preparing: nothing is sent

    assert emulator.tokens_issued == 0


def test_a_refusal_and_debug_lines_name_the_host_without_user_info(
    credential: ManagedIdentityCredential,
) -> None:
    from msi_credential._integrations import _host

    request = requests.Request("GET", "http://user:s3cret@example.com:8080/a").prepare()
    with pytest.raises(ServiceRequestError) as raised:
        ManagedIdentityAuth(credential, ARM)(request)

    assert "s3cret" not in str(raised.value) and "example.com" in str(raised.value)
    assert _host("https://user:s3cret@example.com:8443/a") == "example.com:8443"


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:1/a", "http://127.8.9.10/a", "http://[::1]:1/a", "http://localhost/a", "https://x/a"],
)
def test_plain_http_to_a_loopback_host_gets_the_token(
    credential: ManagedIdentityCredential, url: str
) -> None:
    request = requests.Request("GET", url).prepare()

    ManagedIdentityAuth(credential, ARM)(request)

    assert request.headers["Authorization"].startswith("Bearer ")


def test_arguments_are_checked_at_construction(
    credential: ManagedIdentityCredential, emulator: Emulator
) -> None:
    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    with pytest.raises(ValueError):
        ManagedIdentityAuth(credential, " ")
    with pytest.raises(TypeError):
        ManagedIdentityAuth(object(), ARM)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="synchronous"):
        ManagedIdentityAuth(AsyncCredential(_environ=emulator.environ), ARM)


# ------------------------------------------------------------------------------------------ challenge parsing


def test_claims_from_a_cae_challenge_among_others() -> None:
    header = 'Basic realm="x, y", ' + claims_challenge(CAE_CLAIMS) + ", Negotiate"
    assert claims_from_challenge(header) == CAE_CLAIMS


def test_no_claims_from_other_challenges() -> None:
    assert claims_from_challenge(None) is None
    assert claims_from_challenge('Bearer error="invalid_token"') is None
    assert claims_from_challenge('Bearer error="insufficient_claims"') is None  # no claims parameter
    assert claims_from_challenge('Bearer error="insufficient_claims", claims="!!!"') is None
    assert claims_from_challenge('Basic error="insufficient_claims", claims="e30="') is None


def test_quoted_values_keep_commas_and_escapes() -> None:
    assert parse_challenges(r'Bearer realm="a, \"b\"", error=x') == [
        ("bearer", {"realm": 'a, "b"', "error": "x"})
    ]


@given(st.text())
def test_parsing_any_header_never_raises(header: str) -> None:
    parse_challenges(header)
    claims_from_challenge(header)


class _CountedReads(str):
    """A header that counts how often the parser reads it (each index or slice is one read)."""

    reads = 0

    def __getitem__(self, key: Any) -> str:
        type(self).reads += 1
        return str.__getitem__(self, key)


@pytest.mark.parametrize(
    "hostile",
    [
        "Bearer a=b," + " " * 8000 + "=",  # froze the process for seconds under the old regular expression
        "Bearer " + ", " * 4000,
        "Bearer " + "a=b " * 2000,
        'Bearer a="' + '\\"' * 4000,
        "Bearer " + "x " * 4000,
        " " * 8000 + "=",
    ],
)
def test_challenge_parse_is_linear_in_header_size(hostile: str) -> None:
    header = _CountedReads(hostile[:MAX_CHALLENGE_CHARS])
    _CountedReads.reads = 0

    parse_challenges(header)

    # a scanner that reads characters one by one, each a bounded number of times (no regular expression on the
    # header): reads grow with the length, not with its square (8,000 characters would be some 32 million reads)
    assert 0 < _CountedReads.reads <= 8 * len(header)


def test_a_challenge_over_the_size_bound_is_not_read() -> None:
    padded = claims_challenge(CAE_CLAIMS) + ', pad="' + "x" * (64 * 1024) + '"'
    hostile = "Bearer a=b," + " " * (64 * 1024) + "="

    assert claims_from_challenge(padded) is None
    assert parse_challenges(padded) == []
    assert parse_challenges(hostile) == []
    assert parse_challenges(hostile[:MAX_CHALLENGE_CHARS]) == [("bearer", {"a": "b"})]


def test_a_401_with_a_hostile_challenge_is_returned_as_is(
    tls: Tls,
    service: Service,
    emulator: Emulator,
    credential: ManagedIdentityCredential,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="msi_credential")
    service.challenge = (
        "Bearer a=b," + " " * 60_000 + "="
    )  # under the 64 KiB a header line may have in requests
    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        response = session.get(service.server.url + "/a")

    assert response.status_code == 401
    assert len(service.calls) == 1
    assert emulator.tokens_issued == 1
    assert "not read as a challenge" in caplog.text
