"""msi_credential/_integrations.py and msi_credential/aio/_integrations.py: get_bearer_token_provider, sync
and async (azure-identity's contract, served from the credential's cache), and ManagedIdentityAuth on a real
requests session against a local HTTPS server (trustme certificates, tests/https_stand_in.py), with its
challenge parser."""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any, Optional

import pytest
import requests
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.core.exceptions import ServiceRequestError
from hypothesis import given
from hypothesis import strategies as st

import msi_credential
import msi_credential.aio
from msi_credential import ManagedIdentityAuth, ManagedIdentityCredential, get_bearer_token_provider
from msi_credential._integrations import MAX_CHALLENGE_CHARS, claims_from_challenge, parse_challenges
from msi_credential.aio import ManagedIdentityCredential as AsyncManagedIdentityCredential
from msi_credential.emulator import Emulator

from ..engine.scripted import Clock
from ..https_stand_in import CAE_CLAIMS, Answer, Call, HttpsServer, Tls, claims_challenge

COGNITIVE = "https://cognitiveservices.azure.com/.default"
ARM = "https://management.azure.com/.default"


# ---------------------------------------------------------------------------------- get_bearer_token_provider


def token_requests(emulator: Emulator) -> int:
    return emulator.tokens_issued


def sync_credential(emulator: Emulator, **kwargs: Any) -> ManagedIdentityCredential:
    return ManagedIdentityCredential(_environ=emulator.environ, share_cache=False, **kwargs)


def async_credential(emulator: Emulator, **kwargs: Any) -> AsyncManagedIdentityCredential:
    return AsyncManagedIdentityCredential(_environ=emulator.environ, share_cache=False, **kwargs)


class RecordingCredential:
    """A foreign credential (not ours): records how a provider calls it."""

    def __init__(self, token_info: bool) -> None:
        self.calls: list[tuple[tuple[str, ...], dict[str, Any]]] = []
        self.counter = 0
        if token_info:
            self.get_token_info = self._get_token_info

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.calls.append((scopes, kwargs))
        self.counter += 1
        return AccessToken(f"foreign-{self.counter}", int(time.time()) + 3600)

    def _get_token_info(self, *scopes: str, options: Optional[dict[str, Any]] = None) -> AccessTokenInfo:
        self.calls.append((scopes, {"options": options}))
        self.counter += 1
        return AccessTokenInfo(f"foreign-{self.counter}", int(time.time()) + 3600)


class AsyncRecordingCredential(RecordingCredential):
    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:  # type: ignore[override]
        return RecordingCredential.get_token(self, *scopes, **kwargs)


def test_public_names_are_where_api_md_puts_them() -> None:
    assert "get_bearer_token_provider" in msi_credential.__all__
    assert "get_bearer_token_provider" in msi_credential.aio.__all__
    assert msi_credential.get_bearer_token_provider is not msi_credential.aio.get_bearer_token_provider


def test_provider_returns_the_cached_token_string_with_one_request_for_many_calls(emulator: Emulator) -> None:
    with sync_credential(emulator) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        assert token_requests(emulator) == 0  # lazily: nothing is requested before the first call

        tokens = [provider() for _ in range(100)]

        assert token_requests(emulator) == 1
        assert tokens[0] == emulator.issued_tokens()[0]
        cached = credential.get_token_info(COGNITIVE).token
        assert all(token is cached for token in tokens)  # the cached string itself: nothing built per call


def test_provider_hot_path_allocates_nothing(emulator: Emulator) -> None:
    with sync_credential(emulator) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        provider()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot()
            for _ in range(1000):
                provider()
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ours = tracemalloc.Filter(True, "*msi_credential*")
        growth = [
            stat
            for stat in after.filter_traces([ours]).compare_to(before.filter_traces([ours]), "lineno")
            if stat.count_diff > 0
        ]
        assert growth == []


def test_provider_refreshes_through_the_credential_when_the_token_is_due(emulator: Emulator) -> None:
    clock = Clock(time.time())
    with sync_credential(emulator, _clock=clock, _random=lambda: 0.0) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        first = provider()
        clock.now += 3600 - 299  # past refresh_on (5 minutes before expiry for a 1 h token)

        during = provider()  # at once: the refresh runs beside the call
        assert credential._driver.settle(30)
        second = provider()

        assert token_requests(emulator) == 2
        assert during == first
        assert second != first
        assert provider() is second


def test_provider_sees_a_token_replaced_by_a_claims_request(emulator: Emulator) -> None:
    with sync_credential(emulator) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        first = provider()
        fresh = credential.get_token_info(COGNITIVE, options={"claims": '{"access_token":{}}'}).token

        assert fresh != first
        assert provider() == fresh


def test_same_calls_as_azure_identitys_provider_for_a_foreign_credential() -> None:
    from azure.identity import get_bearer_token_provider as identity_provider

    for token_info in (True, False):
        ours, theirs = RecordingCredential(token_info), RecordingCredential(token_info)

        assert get_bearer_token_provider(ours, COGNITIVE)() == identity_provider(theirs, COGNITIVE)()
        assert ours.calls == theirs.calls  # same method, same scopes, same options
        assert len(ours.calls) == 1


def test_argument_errors_surface_from_the_call_as_with_azure_identity(emulator: Emulator) -> None:
    from azure.identity import get_bearer_token_provider as identity_provider

    with sync_credential(emulator) as credential:
        for scopes in ((), (COGNITIVE, "https://vault.azure.net/.default"), ("  ",)):
            ours, theirs = (
                get_bearer_token_provider(credential, *scopes),
                identity_provider(credential, *scopes),
            )
            with pytest.raises(ValueError):
                ours()
            with pytest.raises(ValueError):
                theirs()
        assert token_requests(emulator) == 0


def test_azure_identitys_provider_on_our_credential_gives_the_same_token(emulator: Emulator) -> None:
    from azure.identity import get_bearer_token_provider as identity_provider

    with sync_credential(emulator) as credential:
        assert (
            identity_provider(credential, COGNITIVE)() == get_bearer_token_provider(credential, COGNITIVE)()
        )
        assert token_requests(emulator) == 1


def test_a_subclass_that_overrides_get_token_info_is_called(emulator: Emulator) -> None:
    calls: list[str] = []

    class Audited(ManagedIdentityCredential):
        def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
            calls.append(scopes[0])
            return super().get_token_info(*scopes, options=options)

    with Audited(_environ=emulator.environ, share_cache=False) as credential:
        provider = get_bearer_token_provider(credential, COGNITIVE)
        provider()
        provider()
    assert calls  # the policy path: the override runs (azure-core's policy caches between calls)


# --------------------------------------------------------------------------- get_bearer_token_provider, async


async def test_async_provider_one_request_for_many_concurrent_calls(emulator: Emulator) -> None:
    async with async_credential(emulator) as credential:
        provider = msi_credential.aio.get_bearer_token_provider(credential, COGNITIVE)
        assert token_requests(emulator) == 0

        tokens = await asyncio.gather(*(provider() for _ in range(50)))

        assert token_requests(emulator) == 1
        assert set(tokens) == {emulator.issued_tokens()[0]}
        cached = (await credential.get_token_info(COGNITIVE)).token
        assert await provider() is cached


async def test_async_provider_refreshes_when_due(emulator: Emulator) -> None:
    clock = Clock(time.time())
    async with async_credential(emulator, _clock=clock, _random=lambda: 0.0) as credential:
        provider = msi_credential.aio.get_bearer_token_provider(credential, COGNITIVE)
        first = await provider()
        clock.now += 3600 - 299

        during = await provider()  # at once: the refresh runs beside the call
        await credential._driver.settle()
        second = await provider()

        assert token_requests(emulator) == 2
        assert during == first
        assert second != first


async def test_async_same_calls_as_azure_identitys_provider_for_a_foreign_credential() -> None:
    from azure.identity.aio import get_bearer_token_provider as identity_provider

    ours, theirs = AsyncRecordingCredential(False), AsyncRecordingCredential(False)

    assert (
        await msi_credential.aio.get_bearer_token_provider(ours, COGNITIVE)()
        == await identity_provider(theirs, COGNITIVE)()
    )
    assert ours.calls == theirs.calls
    assert len(ours.calls) == 1


async def test_async_argument_errors_surface_from_the_call(emulator: Emulator) -> None:
    async with async_credential(emulator) as credential:
        provider = msi_credential.aio.get_bearer_token_provider(credential)
        with pytest.raises(ValueError):
            await provider()
    assert token_requests(emulator) == 0


async def test_async_azure_identitys_provider_on_our_credential_gives_the_same_token(
    emulator: Emulator,
) -> None:
    from azure.identity.aio import get_bearer_token_provider as identity_provider

    async with async_credential(emulator) as credential:
        theirs = await identity_provider(credential, COGNITIVE)()
        ours = await msi_credential.aio.get_bearer_token_provider(credential, COGNITIVE)()
        assert theirs == ours
        assert token_requests(emulator) == 1


# ------------------------------------------------------------------ ManagedIdentityAuth on a requests session


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


@pytest.mark.parametrize(
    ("answer", "requests_sent", "logged"),
    [
        pytest.param({"always_challenge": True}, 2, None, id="a_second_claims_challenge"),
        pytest.param({"plain_401": True}, 1, None, id="no_claims_challenge"),
        # under the 64 KiB a header line may have in requests
        pytest.param(
            {"challenge": "Bearer a=b," + " " * 60_000 + "="},
            1,
            "not read as a challenge",
            id="a_hostile_challenge",
        ),
    ],
)
def test_a_401_not_retried_is_returned_as_is(
    tls: Tls,
    service: Service,
    emulator: Emulator,
    credential: ManagedIdentityCredential,
    caplog: pytest.LogCaptureFixture,
    answer: dict[str, Any],
    requests_sent: int,
    logged: Optional[str],
) -> None:
    """A second claims challenge is returned, not retried again; a 401 without one, or with a challenge too
    large to read, is returned at once. Each request that went had a token of its own."""
    caplog.set_level(logging.DEBUG, logger="msi_credential")
    for name, value in answer.items():
        setattr(service, name, value)
    with session_for(tls, ManagedIdentityAuth(credential, ARM)) as session:
        response = session.get(service.server.url + "/a")

    assert response.status_code == 401
    assert len(service.calls) == requests_sent
    assert emulator.tokens_issued == requests_sent
    if logged is not None:
        assert logged in caplog.text


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
