"""The policy list of `_transport/policies.py`: which azure-core policies every managed identity request goes
through, in which order, with which arguments, and what they may log or trace. The builder is called directly: no
sockets. The Arc challenge's redaction is also checked end to end, through both faces against the emulator."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.core.pipeline.policies import (
    CustomHookPolicy,
    DistributedTracingPolicy,
    HeadersPolicy,
    HttpLoggingPolicy,
    RequestIdPolicy,
    UserAgentPolicy,
)

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
