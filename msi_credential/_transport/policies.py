"""The azure-core policies every managed identity request goes through (both pipelines use the same list)."""

from __future__ import annotations

from typing import Any

from azure.core.pipeline.policies import (
    CustomHookPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    RequestIdPolicy,
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


def build_policies(**kwargs: Any) -> list[Any]:
    """User agent, request id, custom headers, raw request/response hooks, tracing and redacted HTTP logging.

    azure-core's DistributedTracingPolicy (as in azure-identity's pipeline) makes a span of each HTTP request when the
    application turned azure-core's tracing on (README.md, "Tracing"); it does nothing otherwise. It records the
    method, the URL with the values of query parameters outside SAFE_QUERY_PARAMS redacted (no managed identity
    endpoint takes a secret in its query), the status, the user agent and the request ids: never a header that
    carries a secret, nor a body. It sits after the request id and user agent policies, so their headers are on the
    span, and after the hooks, so a hook sees the request without the trace context headers it adds.

    There is no retry policy (the engine retries), no redirect policy (a 3xx is an error: azure-core's redirect
    policy would forward the identity header) and no proxy policy (proxies apply to workload identity only).
    """
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
        tracing_policy,
        logging_policy,
    ]
