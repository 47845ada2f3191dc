"""The policy list of `_transport/policies.py`: which azure-core policies every managed identity request goes
through, in which order, with which arguments, and what they may log or trace, and which of the caller's own
policies it takes. The builder and the caller's policies' check are called directly: no sockets. The last section goes through both faces against the emulator: the Arc challenge's redaction in debug logs,
the pipeline keywords that reach the request, the caller's policies that run after ours, and the caller's policies
that are refused (those that would break a guarantee, or belong to the other face)."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.core.pipeline.policies import (
    AsyncBearerTokenCredentialPolicy,
    AsyncHTTPPolicy,
    AsyncRedirectPolicy,
    AsyncRetryPolicy,
    BearerTokenCredentialPolicy,
    CustomHookPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    HTTPPolicy,
    NetworkTraceLoggingPolicy,
    ProxyPolicy,
    RedirectPolicy,
    RequestIdPolicy,
    RetryPolicy,
    SansIOHTTPPolicy,
    UserAgentPolicy,
)

from msi_credential import ManagedIdentityCredential
from msi_credential._transport import policies
from msi_credential._version import VERSION

from .support import SCOPE, log_text

# ------------------------------------------------------------------------------------------ build_policies


def _by_type(built: list[Any]) -> dict[type, Any]:
    return {type(policy): policy for policy in built}


def test_build_policies_returns_the_six_policies_in_pipeline_order() -> None:
    built = policies.build_policies()

    assert [type(policy) for policy in built] == [
        HeadersPolicy,
        UserAgentPolicy,
        RequestIdPolicy,
        CustomHookPolicy,
        DistributedTracingPolicy,
        HttpLoggingPolicy,
    ]


def test_build_policies_traces_as_msi_credential_with_the_safe_query_parameters() -> None:
    tracing_policy = _by_type(policies.build_policies())[DistributedTracingPolicy]

    if hasattr(tracing_policy, "_instrumentation_config"):  # azure-core 1.33+ (native tracing)
        assert tracing_policy._instrumentation_config == {
            "library_name": "msi-credential",
            "library_version": VERSION,
        }
    allowed = getattr(
        tracing_policy, "allowed_query_params", None
    )  # older azure-core: no redaction to configure
    if allowed is not None:
        assert {name.lower() for name in allowed} == {
            name.lower() for name in DistributedTracingPolicy.DEFAULT_QUERY_PARAMS_ALLOWLIST
        } | set(policies.SAFE_QUERY_PARAMS)


def test_build_policies_takes_an_azure_core_whose_tracing_policy_does_not_redact_urls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class OlderTracingPolicy:  # azure-core before span URL redaction: no allowed_query_params to extend
        def __init__(self, **kwargs: Any) -> None:
            self.kwargs = kwargs

    monkeypatch.setattr(policies, "DistributedTracingPolicy", OlderTracingPolicy)

    built = policies.build_policies()

    assert isinstance(built[4], OlderTracingPolicy)
    assert not hasattr(built[4], "allowed_query_params")


def test_build_policies_user_agent_is_msi_credential_and_its_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_HTTP_USER_AGENT", raising=False)

    assert _by_type(policies.build_policies())[UserAgentPolicy].user_agent == f"msi-credential/{VERSION}"
    assert (
        _by_type(policies.build_policies(user_agent="app/2"))[UserAgentPolicy].user_agent
        == f"app/2 msi-credential/{VERSION}"
    )


def test_build_policies_passes_the_keyword_arguments_to_every_policy() -> None:
    def hook(request: Any) -> None:
        return None

    logger = logging.getLogger("msi-credential-test")
    built = _by_type(
        policies.build_policies(
            headers={"x-test": "1"},
            request_id="request-1",
            raw_request_hook=hook,
            raw_response_hook=hook,
            logger=logger,
            user_agent_use_env=False,
            tracing_attributes={"app": "x"},
        )
    )

    assert built[HeadersPolicy].headers == {"x-test": "1"}
    assert built[RequestIdPolicy]._request_id == "request-1"
    assert built[CustomHookPolicy]._request_callback is hook
    assert built[CustomHookPolicy]._response_callback is hook
    assert built[HttpLoggingPolicy].logger is logger
    assert built[UserAgentPolicy].use_env is False
    assert built[DistributedTracingPolicy]._tracing_attributes == {"app": "x"}


def test_build_policies_logs_only_the_safe_headers_and_query_parameters() -> None:
    logging_policy = _by_type(policies.build_policies())[HttpLoggingPolicy]
    defaults = {name.lower() for name in HttpLoggingPolicy.DEFAULT_HEADERS_ALLOWLIST}

    assert {name.lower() for name in logging_policy.allowed_header_names} == (
        defaults - {"www-authenticate"}
    ) | {
        "metadata",
        "x-ms-request-id",
        "x-ms-client-request-id",
        "retry-after",
    }
    assert {name.lower() for name in logging_policy.allowed_query_params} == {
        name.lower()
        for name in getattr(HttpLoggingPolicy, "DEFAULT_QUERY_PARAMS_ALLOWLIST", ())  # older azure-core: none
    } | {"api-version", "resource", "client_id", "object_id", "msi_res_id", "mi_res_id", "clientid", "xms_cc"}
    for secret in ("X-IDENTITY-HEADER", "secret", "Authorization", "WWW-Authenticate"):
        assert secret not in logging_policy.allowed_header_names


# ----------------------------------------------------------------------------------------- caller_policies


class _SansIO(SansIOHTTPPolicy):  # type: ignore[type-arg]
    pass


class _Sync(HTTPPolicy):  # type: ignore[type-arg]
    def send(self, request: Any) -> Any:
        return self.next.send(request)


class _Async(AsyncHTTPPolicy):  # type: ignore[type-arg]
    async def send(self, request: Any) -> Any:
        return await self.next.send(request)


class _Credential:  # what a bearer token policy wraps; never asked for a token here
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        raise AssertionError("not called")


WHY_RETRY = "msi_credential retries itself (retry_total, retry_backoff_factor, retry_backoff_max, timeout)"
WHY_REDIRECT = "redirects are never followed: the identity header would go to wherever a 3xx points"
WHY_PROXY = "proxies are never used toward managed identity endpoints (the proxy would see the secret)"
WHY_BODIES = "it logs bodies, and a token response body is the token"
WHY_LOGGED = "every request is logged already, with the secret headers redacted"
WHY_BEARER = "a token request carries its own secret, not another credential's token"
REFUSED = [
    (RetryPolicy, WHY_RETRY),
    (AsyncRetryPolicy, WHY_RETRY),
    (RedirectPolicy, WHY_REDIRECT),
    (AsyncRedirectPolicy, WHY_REDIRECT),
    (ProxyPolicy, WHY_PROXY),
    (NetworkTraceLoggingPolicy, WHY_BODIES),
    (HttpLoggingPolicy, WHY_LOGGED),
    (BearerTokenCredentialPolicy, WHY_BEARER),
    (AsyncBearerTokenCredentialPolicy, WHY_BEARER),
]


def _instance(kind: type) -> Any:
    return kind(_Credential(), SCOPE) if "Bearer" in kind.__name__ else kind()


def _refusal(kwargs: dict[str, Any], asynchronous: bool) -> str:
    with pytest.raises(ValueError) as raised:
        policies.caller_policies(kwargs, asynchronous)
    return str(raised.value)


# change: a keyword is skipped, read under another name, or the order policies, per_call, per_retry is changed
def test_caller_policies_are_policies_then_per_call_then_per_retry_in_their_order() -> None:
    first, second, third, fourth = _SansIO(), _Sync(), _SansIO(), _Sync()
    kwargs = {"per_retry_policies": [fourth], "per_call_policies": (second, third), "policies": [first]}

    assert policies.caller_policies(kwargs, False) == [first, second, third, fourth]
    assert policies.caller_policies({}, False) == []
    assert policies.caller_policies({"policies": None, "per_call_policies": [], "other": [first]}, True) == []


# change: a lone policy of one of the three kinds is refused as "not a list" instead of taken as a list of one
@pytest.mark.parametrize("keyword", ["policies", "per_call_policies", "per_retry_policies"])
def test_caller_policies_take_a_lone_policy_of_either_face_as_a_list_of_one(keyword: str) -> None:
    sansio, sync, asynchronous = _SansIO(), _Sync(), _Async()

    assert policies.caller_policies({keyword: sansio}, False) == [sansio]
    assert policies.caller_policies({keyword: sansio}, True) == [sansio]
    assert policies.caller_policies({keyword: sync}, False) == [sync]
    assert policies.caller_policies({keyword: asynchronous}, True) == [asynchronous]


# change: a text, bytes or a value that cannot be iterated is let through, or the message is altered
@pytest.mark.parametrize("keyword", ["policies", "per_call_policies", "per_retry_policies"])
@pytest.mark.parametrize("given", ["RetryPolicy", b"RetryPolicy", 3, object()])
def test_caller_policies_that_are_not_a_list_are_refused_naming_the_keyword(keyword: str, given: Any) -> None:
    for asynchronous in (False, True):
        assert _refusal({keyword: given}, asynchronous) == f"{keyword}= must be a list of azure-core policies"


# change: a refused policy, as an instance or as its class, is let through, or the message names it otherwise
@pytest.mark.parametrize(("kind", "why"), REFUSED, ids=[kind.__name__ for kind, _ in REFUSED])
@pytest.mark.parametrize("keyword", ["policies", "per_call_policies", "per_retry_policies"])
def test_caller_policies_that_would_break_a_guarantee_are_refused_with_the_reason(
    kind: type, why: str, keyword: str
) -> None:
    expected = f"{keyword}= holds {kind.__name__}, which cannot run here: {why}"

    for asynchronous in (False, True):
        assert _refusal({keyword: [_SansIO(), _instance(kind)]}, asynchronous) == expected
        assert _refusal({keyword: [kind]}, asynchronous) == expected


# change: a policy the face cannot run is let through, or the message names the policy, the face or the kinds
# otherwise
@pytest.mark.parametrize("keyword", ["policies", "per_call_policies", "per_retry_policies"])
def test_caller_policies_the_face_cannot_run_are_refused_naming_what_it_takes(keyword: str) -> None:
    sync_kinds = "(a SansIOHTTPPolicy or an HTTPPolicy instance)"
    async_kinds = "(a SansIOHTTPPolicy or an AsyncHTTPPolicy instance)"

    assert _refusal({keyword: [_Async()]}, False) == (
        f"{keyword}= holds _Async, not a policy the sync pipeline can run {sync_kinds}"
    )
    assert _refusal({keyword: [_Sync()]}, True) == (
        f"{keyword}= holds _Sync, not a policy the async pipeline can run {async_kinds}"
    )
    assert _refusal({keyword: [object()]}, False) == (
        f"{keyword}= holds object, not a policy the sync pipeline can run {sync_kinds}"
    )
    assert _refusal({keyword: [_SansIO]}, True) == (  # the class, not an instance of it
        f"{keyword}= holds _SansIO, not a policy the async pipeline can run {async_kinds}"
    )


# change: build_policies leaves out the caller's policies, puts them elsewhere, or checks them for the other face
def test_build_policies_puts_the_callers_policies_after_the_hooks_and_checks_them_for_its_face() -> None:
    first, second = _SansIO(), _Sync()

    built = policies.build_policies(policies=[first], per_retry_policies=second)

    assert built[4:6] == [first, second]
    assert [type(policy) for policy in built[6:]] == [DistributedTracingPolicy, HttpLoggingPolicy]
    with pytest.raises(ValueError, match="not a policy the async pipeline can run"):
        policies.build_policies(asynchronous=True, policies=[second])
    assert policies.build_policies(asynchronous=True, policies=[_Async()])[4].__class__ is _Async


# ------------------------------------------------------------------------------------ through both faces


def test_the_arc_challenge_header_is_redacted_in_debug_logs(
    face: Any, emulator_factory: Any, caplog: Any, tmp_path: Any
) -> None:
    emulator = emulator_factory("azure_arc", arc_key_directory=str(tmp_path))
    credential = face.credential(emulator, logging_enable=True)
    caplog.set_level(logging.DEBUG)

    credential.get_token(SCOPE)

    text = log_text(caplog)
    assert str(tmp_path) not in text
    assert "WWW-Authenticate" in text or "www-authenticate" in text.lower()  # logged, with its value redacted


def test_pipeline_keywords_reach_the_request(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    seen: list[str] = []
    credential = face.credential(
        emulator,
        user_agent="my-app/1.0",
        headers={"x-custom": "yes"},
        raw_request_hook=lambda request: seen.append(request.http_request.url),
    )

    credential.get_token(SCOPE)

    request = emulator.requests[0]
    assert request.headers["user-agent"].startswith("my-app/1.0")
    assert request.headers["x-custom"] == "yes"
    assert len(seen) == 1


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
    credential.get_token(SCOPE)

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
        policy = getattr(policies, name)(ManagedIdentityCredential(_environ={}), SCOPE)
    else:
        policy = getattr(policies, name)()

    with pytest.raises(ValueError, match=f"policies= holds {name}, .*{why}"):
        face.credential(emulator, policies=[policy])
    with pytest.raises(ValueError, match="per_call_policies= must be a list"):
        face.credential(emulator, per_call_policies="RetryPolicy")

    assert emulator.requests == []


def test_a_policy_of_the_other_face_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    wrong, right = (_Sync, _Async) if face.is_async else (_Async, _Sync)

    with pytest.raises(ValueError, match=f"policies= holds {wrong.__name__}, not a policy the"):
        face.credential(emulator, policies=[wrong()])
    assert face.credential(emulator, policies=[right()]).get_token(SCOPE).token
