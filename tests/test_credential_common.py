"""Behaviour shared by every source, on both faces: arguments, errors, cache, pipeline, secrets."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.pipeline.transport import HttpTransport

from msi_credential import (
    CredentialUnavailableError,
    ManagedIdentityCredential,
    ManagedIdentityError,
    ManagedIdentitySource,
)
from msi_credential._setup import called_from_credential_chain
from msi_credential.emulator import Fault

STORAGE = "https://storage.azure.com/.default"


class RefusingTransport(HttpTransport):  # type: ignore[type-arg]
    """Stands in for a network where nothing answers at the IMDS address (no socket is opened)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def __enter__(self) -> RefusingTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append((request, kwargs))
        raise ServiceRequestError("connection refused")


def test_not_on_azure_in_a_credential_chain_is_unavailable_without_retries(in_credential_chain: None) -> None:
    transport = RefusingTransport()
    credential = ManagedIdentityCredential(_environ={}, transport=transport, _sleep=lambda s: None)
    assert credential.source is ManagedIdentitySource.IMDS

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert isinstance(caught.value, ClientAuthenticationError)
    [(request, options)] = transport.requests
    assert request.url.startswith("http://169.254.169.254/metadata/identity/oauth2/token?")
    assert options["connection_timeout"] == 1.0


def test_not_on_azure_on_its_own_is_unavailable_after_the_normal_timeouts_and_retries() -> None:
    sleeps: list[float] = []
    transport = RefusingTransport()
    credential = ManagedIdentityCredential(_environ={}, transport=transport, _sleep=sleeps.append)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert [options["connection_timeout"] for _, options in transport.requests] == [2.0] * 4
    assert sleeps == [1.0, 2.0, 4.0]


def test_a_call_is_in_a_chain_while_azure_identity_marks_it_so(in_credential_chain: None) -> None:
    from azure.identity._internal import utils

    assert called_from_credential_chain()
    reset = utils.within_credential_chain.set(False)  # as ChainedTokenCredential leaves it after its loop
    assert not called_from_credential_chain()
    utils.within_credential_chain.reset(reset)


@pytest.mark.parametrize(
    "module", [None, types.SimpleNamespace(), types.SimpleNamespace(within_credential_chain=True)]
)
def test_without_azure_identity_s_chain_marker_a_call_is_not_in_a_chain(
    monkeypatch: pytest.MonkeyPatch, in_credential_chain: None, module: Any
) -> None:
    monkeypatch.setitem(sys.modules, "azure.identity._internal.utils", module)

    assert not called_from_credential_chain()


def test_telling_a_chain_call_imports_nothing() -> None:
    code = (
        "import sys\n"
        "from msi_credential._setup import called_from_credential_chain\n"
        "print(called_from_credential_chain(), any(name.startswith('azure.identity') for name in sys.modules))\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize(
    "scopes",
    [(), ("a", "b"), ("",), ("   ",), ("/.default",), ("https://x/.default\n",), ("https://x y",)],
)
def test_bad_scopes_are_value_errors(face: Any, emulator_factory: Any, scopes: tuple[str, ...]) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    with pytest.raises(ValueError):
        credential.get_token(*scopes)
    with pytest.raises(ValueError):
        credential.get_token_info(*scopes)
    assert emulator.requests == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"client_id": "a", "object_id": "b"},
        {"client_id": "a", "identity_config": {"client_id": "a"}},
        {"resource_id": "r", "identity_config": {"object_id": "o"}},
        {"client_id": ""},
        {"client_id": 5},
        {"identity_config": "client_id=a"},
        {"connection_timeout": -1},
        {"read_timeout": "fast"},
        {"retry_total": -1},
        {"client_capabilities": "cp1"},
        {"share_cache": "yes"},
    ],
)
def test_bad_constructor_arguments_are_value_errors(face: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        face.credential(**kwargs)


def test_scope_without_default_suffix_is_the_resource(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    credential.get_token("https://management.azure.com")
    credential.get_token("api://my-app/.default")

    assert [r.query["resource"] for r in emulator.requests] == [
        "https://management.azure.com",
        "api://my-app",
    ]


def test_tenant_id_and_enable_cae_do_not_change_the_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    credential.get_token(STORAGE, tenant_id="other-tenant", enable_cae=True)

    assert set(emulator.requests[0].query) == {"api-version", "resource"}


def test_detection_happens_once_at_construction(face: Any, emulator_factory: Any, monkeypatch: Any) -> None:
    emulator = emulator_factory("app_service")
    for name, value in emulator.environ.items():
        monkeypatch.setenv(name, value)
    credential = face.credential(_environ=None)
    for name in emulator.environ:
        monkeypatch.delenv(name)

    assert credential.source is ManagedIdentitySource.APP_SERVICE
    assert credential.get_token(STORAGE).token


def test_credentials_of_one_identity_share_the_process_cache(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")

    tokens = {face.credential(emulator, share_cache=True).get_token(STORAGE).token for _ in range(5)}
    private = face.credential(emulator, share_cache=False).get_token(STORAGE).token

    assert len(tokens) == 1
    assert private not in tokens
    assert emulator.tokens_issued == 2


def test_errors_are_not_cached_and_the_credential_stays_usable(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(400, {"error": "invalid_request", "error_description": "Identity not found"}))
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError):
        credential.get_token(STORAGE)
    assert credential.get_token(STORAGE).token


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
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "invalid_response"
    assert caught.value.source is ManagedIdentitySource.APP_SERVICE


def test_body_over_one_mebibyte_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(200, b"x" * (1024 * 1024 + 10)))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "response_too_large"


def test_text_plain_json_is_accepted(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(200, b'{"access_token": "aci-token", "expires_in": "3600"}', {"Content-Type": "text/plain"})
    )
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token == "aci-token"


def test_unavailable_error_is_azure_identity_class_when_it_is_imported() -> None:
    import azure.identity

    transport_error = RefusingTransport()
    credential = ManagedIdentityCredential(
        _environ={}, transport=transport_error, _sleep=lambda seconds: None
    )

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert isinstance(caught.value, azure.identity.CredentialUnavailableError)


def test_pipeline_keywords_reach_the_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    seen: list[str] = []
    credential = face.credential(
        emulator,
        user_agent="my-app/1.0",
        headers={"x-custom": "yes"},
        raw_request_hook=lambda request: seen.append(request.http_request.url),
    )

    credential.get_token(STORAGE)

    request = emulator.requests[0]
    assert request.headers["user-agent"].startswith("my-app/1.0")
    assert request.headers["x-custom"] == "yes"
    assert len(seen) == 1


def test_proxy_variables_are_ignored_for_managed_identity(
    face: Any, emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{unused_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    emulator = emulator_factory("app_service")
    credential = face.credential(emulator)

    assert credential.get_token(STORAGE).token
    assert len(emulator.requests) == 1


def test_secrets_never_reach_logs_errors_or_reprs(
    face: Any, emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator = emulator_factory("app_service")
    secret = emulator.environ["IDENTITY_HEADER"]
    emulator.script(Fault(500, {"message": f"echoing {secret}"}), Fault(500), Fault(500), Fault(500))
    credential = face.credential(emulator, logging_enable=True)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)
    token = credential.get_token(STORAGE).token

    texts = [record.getMessage() for record in caplog.records]
    texts += [str(caught.value), repr(caught.value), repr(credential.inner), str(credential.inner)]
    for text in texts:
        assert secret not in text
        assert token not in text


def test_leaving_the_context_manager_closes_the_supplied_transport(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import RequestsTransport

    class Recording(RequestsTransport):
        closed = 0

        def close(self) -> None:
            Recording.closed += 1
            super().close()

    emulator = emulator_factory("imds")
    with ManagedIdentityCredential(
        _environ=emulator.environ, share_cache=False, transport=Recording()
    ) as credential:
        assert credential.get_token(STORAGE).token
        assert Recording.closed == 0

    assert Recording.closed >= 1


async def test_leaving_the_async_context_manager_closes_the_supplied_transport(emulator_factory: Any) -> None:
    from azure.core.pipeline.transport import AioHttpTransport

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    class Recording(AioHttpTransport):
        closed = 0

        async def close(self) -> None:
            Recording.closed += 1
            await super().close()

    emulator = emulator_factory("imds")
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=Recording()
    ) as credential:
        assert (await credential.get_token(STORAGE)).token
        assert Recording.closed == 0

    assert Recording.closed >= 1


async def test_a_given_transport_refused_by_the_exiting_interpreter_is_a_typed_error(
    emulator_factory: Any,
) -> None:
    """In an atexit handler a caller's async transport that needs the loop's executor cannot send; our own
    transports then send as the sync face does (tests/test_processes.py), a caller's is a ManagedIdentityError."""
    from azure.core.pipeline.transport import AioHttpTransport

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    class Exiting(AioHttpTransport):
        async def send(self, request: Any, **kwargs: Any) -> Any:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    emulator = emulator_factory("app_service")
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=Exiting()
    ) as credential:
        with pytest.raises(ManagedIdentityError) as caught:
            await credential.get_token(STORAGE)

    assert caught.value.error_code == "interpreter_exiting"
    assert "atexit" in str(caught.value)


# ------------------------------------------------------------------------------------------ pipeline keywords


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"polices": []}, "'polices'"),  # a misspelt keyword is not dropped
        ({"tenant_id": "x"}, "'tenant_id'"),
        ({"retry_mode": "fixed"}, "retry_mode="),
        ({"retry_on_status_codes": [500]}, "retry_on_status_codes="),
        ({"permit_redirects": True}, "permit_redirects="),
        ({"redirect_max": 3}, "redirect_max="),
        ({"use_env_settings": True}, "use_env_settings="),
        ({"session": object()}, "session="),
    ],
)
def test_a_keyword_the_credential_would_ignore_is_a_value_error_naming_it(
    face: Any, emulator_factory: Any, kwargs: dict[str, Any], named: str
) -> None:
    emulator = emulator_factory("imds")

    with pytest.raises(ValueError, match=named):
        face.credential(emulator, **kwargs)

    assert emulator.requests == []


def test_keywords_azure_identity_callers_pass_are_taken(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(
        emulator,
        logging_enable=True,
        additionally_allowed_tenants=["*"],
        permit_redirects=False,
        use_env_settings=False,
        user_agent_use_env=False,
        request_id_header_name="x-ms-client-request-id",
    )

    assert credential.get_token(STORAGE).token


def test_caller_policies_run_on_every_token_request_after_ours(face: Any, emulator_factory: Any) -> None:
    from azure.core.pipeline.policies import SansIOHTTPPolicy

    seen: list[tuple[str, Any]] = []

    class Recording(SansIOHTTPPolicy):  # type: ignore[type-arg]
        def __init__(self, name: str) -> None:
            self.name = name

        def on_request(self, request: Any) -> None:
            seen.append((self.name, request.http_request.headers.get("User-Agent")))

        def on_response(self, request: Any, response: Any) -> None:
            seen.append((self.name, response.http_response.status_code))

    emulator = emulator_factory("imds")
    credential = face.credential(
        emulator,
        policies=[Recording("policies")],
        per_call_policies=[Recording("per_call")],
        per_retry_policies=Recording("per_retry"),  # one policy, as azure-core also takes it
        user_agent="app/1",
    )
    credential.get_token(STORAGE)

    user_agent = emulator.requests[0].headers["user-agent"]
    assert user_agent.startswith("app/1 msi-credential/")
    assert seen == [
        ("policies", user_agent),
        ("per_call", user_agent),
        ("per_retry", user_agent),
        ("per_retry", 200),
        ("per_call", 200),
        ("policies", 200),
    ]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("RetryPolicy", "retries itself"),
        ("AsyncRetryPolicy", "retries itself"),
        ("RedirectPolicy", "redirects are never followed"),
        ("AsyncRedirectPolicy", "redirects are never followed"),
        ("ProxyPolicy", "proxies are never used"),
        ("NetworkTraceLoggingPolicy", "logs bodies"),
        ("HttpLoggingPolicy", "redacted"),
        ("BearerTokenCredentialPolicy", "its own secret"),
        ("AsyncBearerTokenCredentialPolicy", "its own secret"),
        ("object", "not a policy"),
    ],
)
def test_caller_policies_that_would_break_a_guarantee_are_refused(
    face: Any, emulator_factory: Any, name: str, why: str
) -> None:
    from azure.core.pipeline import policies

    emulator = emulator_factory("imds")
    if name == "object":
        policy: Any = object()
    elif "Bearer" in name:
        policy = getattr(policies, name)(ManagedIdentityCredential(_environ={}), STORAGE)
    else:
        policy = getattr(policies, name)()

    with pytest.raises(ValueError, match=f"policies= holds {name}, .*{why}"):
        face.credential(emulator, policies=[policy])
    with pytest.raises(ValueError, match="per_call_policies= must be a list"):
        face.credential(emulator, per_call_policies="RetryPolicy")

    assert emulator.requests == []


def test_a_policy_of_the_other_face_is_refused(face: Any, emulator_factory: Any) -> None:
    from azure.core.pipeline.policies import AsyncHTTPPolicy, HTTPPolicy

    class SyncOnly(HTTPPolicy):  # type: ignore[type-arg]
        def send(self, request: Any) -> Any:
            return self.next.send(request)

    class AsyncOnly(AsyncHTTPPolicy):  # type: ignore[type-arg]
        async def send(self, request: Any) -> Any:
            return await self.next.send(request)

    emulator = emulator_factory("imds")
    wrong, right = (SyncOnly, AsyncOnly) if face.is_async else (AsyncOnly, SyncOnly)

    with pytest.raises(ValueError, match=f"policies= holds {wrong.__name__}, not a policy the"):
        face.credential(emulator, policies=[wrong()])
    assert face.credential(emulator, policies=[right()]).get_token(STORAGE).token


def test_azure_identity_chain_gets_a_token_and_closes_the_credential(
    face: Any, emulator_factory: Any
) -> None:
    """azure-identity's ChainedTokenCredential.close() calls ``__exit__()`` / ``__aexit__()`` with no arguments."""
    if face.is_async:
        from azure.identity.aio import ChainedTokenCredential
    else:
        from azure.identity import ChainedTokenCredential
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)
    chain = ChainedTokenCredential(credential.inner)

    assert face._run(chain.get_token(STORAGE)).token
    face._run(chain.close())
    face._run(chain.close())
    # what azure-core's protocols declare and chains of other libraries call: the exit methods without arguments
    face._run(credential.inner.__aexit__() if face.is_async else credential.inner.__exit__())


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


class MinimalTransport(HttpTransport):  # type: ignore[type-arg]
    def __init__(self, offer: str, body: bytes | None = None) -> None:
        self.offer = offer
        self.body = body

    def __enter__(self) -> MinimalTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

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
