"""The azure-core policies every managed identity request goes through (both pipelines use the same list)."""

from __future__ import annotations

from typing import Any

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

from .._tracing import LIBRARY_NAME
from .._version import VERSION

# Header values outside this list are logged as "REDACTED" (X-IDENTITY-HEADER, secret, Secret, Authorization...,
# and WWW-Authenticate, whose Azure Arc realm names the key file).
SAFE_HEADERS = frozenset({"metadata", "x-ms-request-id", "x-ms-client-request-id", "retry-after"})
REDACTED_HEADERS = ("WWW-Authenticate",)
SAFE_QUERY_PARAMS = frozenset(
    {"api-version", "resource", "client_id", "object_id", "msi_res_id", "mi_res_id", "clientid", "xms_cc"}
)


# Policies a caller's policies=, per_call_policies= or per_retry_policies= may not hold: each would break a rule of
# docs/protocols.md sections 7 and 9.
_REFUSED_POLICIES: tuple[tuple[Any, str], ...] = (
    (
        (RetryPolicy, AsyncRetryPolicy),
        "msi_credential retries itself (retry_total, retry_backoff_factor, retry_backoff_max, timeout)",
    ),
    (
        (RedirectPolicy, AsyncRedirectPolicy),
        "redirects are never followed: the identity header would go to wherever a 3xx points",
    ),
    (
        ProxyPolicy,
        "proxies are never used toward managed identity endpoints (the proxy would see the secret)",
    ),
    (NetworkTraceLoggingPolicy, "it logs bodies, and a token response body is the token"),
    (HttpLoggingPolicy, "every request is logged already, with the secret headers redacted"),
    (
        (BearerTokenCredentialPolicy, AsyncBearerTokenCredentialPolicy),
        "a token request carries its own secret, not another credential's token",
    ),
)
_KEYWORDS = ("policies", "per_call_policies", "per_retry_policies")


def caller_policies(kwargs: dict[str, Any], asynchronous: bool) -> list[Any]:
    """The caller's own policies (``policies``, ``per_call_policies``, ``per_retry_policies``, in that order),
    checked: a ValueError names the keyword and the policy that cannot run here."""
    usable = (SansIOHTTPPolicy, AsyncHTTPPolicy) if asynchronous else (SansIOHTTPPolicy, HTTPPolicy)
    face = "async" if asynchronous else "sync"
    found: list[Any] = []
    for keyword in _KEYWORDS:
        given = kwargs.get(keyword)
        if given is None:
            continue
        if isinstance(given, (SansIOHTTPPolicy, HTTPPolicy, AsyncHTTPPolicy)):
            given = [given]  # one policy, as azure-core's PipelineClient also takes it
        if isinstance(given, (str, bytes)) or not hasattr(given, "__iter__"):
            raise ValueError(f"{keyword}= must be a list of azure-core policies")
        for policy in given:
            for refused, why in _REFUSED_POLICIES:
                if isinstance(policy, refused) or (isinstance(policy, type) and issubclass(policy, refused)):
                    raise ValueError(f"{keyword}= holds {_name(policy)}, which cannot run here: {why}")
            if not isinstance(policy, usable):
                raise ValueError(
                    f"{keyword}= holds {_name(policy)}, not a policy the {face} pipeline can run "
                    f"(a SansIOHTTPPolicy or {'an AsyncHTTPPolicy' if asynchronous else 'an HTTPPolicy'} instance)"
                )
            found.append(policy)
    return found


def _name(policy: object) -> str:
    return policy.__name__ if isinstance(policy, type) else type(policy).__name__


def build_policies(*, asynchronous: bool = False, **kwargs: Any) -> list[Any]:
    """User agent, request id, custom headers, raw request/response hooks, the caller's own policies
    (``caller_policies``), tracing, and redacted HTTP logging, last, so it logs the request as it is sent.

    azure-core's DistributedTracingPolicy (as in azure-identity's pipeline) makes a span of each HTTP request when the
    application turned azure-core's tracing on (README.md, "Tracing"); it does nothing otherwise. It records the
    method, the URL with the values of query parameters outside SAFE_QUERY_PARAMS redacted (no managed identity
    endpoint takes a secret in its query), the status, the user agent and the request ids: never a header that
    carries a secret, nor a body. It sits after the request id and user agent policies, so their headers are on the
    span, and after the hooks, so a hook sees the request without the trace context headers it adds.

    There is no retry policy (the engine retries), no redirect policy (a 3xx is an error: azure-core's redirect
    policy would forward the identity header) and no proxy policy (proxies apply to workload identity only).
    """
    own = caller_policies(kwargs, asynchronous)
    logging_policy = HttpLoggingPolicy(**kwargs)
    logging_policy.allowed_header_names.update(SAFE_HEADERS)
    for name in REDACTED_HEADERS:  # azure-core allows these by default
        logging_policy.allowed_header_names.discard(name)
    logging_policy.allowed_query_params.update(SAFE_QUERY_PARAMS)
    tracing_policy = DistributedTracingPolicy(
        **{"instrumentation_config": {"library_name": LIBRARY_NAME, "library_version": VERSION}, **kwargs}
    )
    # newer azure-core redacts the values of the other query parameters in the span's URL
    allowed = getattr(tracing_policy, "allowed_query_params", None)
    if allowed is not None:
        allowed.update(SAFE_QUERY_PARAMS)
    return [
        HeadersPolicy(**kwargs),
        UserAgentPolicy(base_user_agent=f"msi-credential/{VERSION}", **kwargs),
        RequestIdPolicy(**kwargs),
        CustomHookPolicy(**kwargs),
        *own,
        tracing_policy,
        logging_policy,
    ]
