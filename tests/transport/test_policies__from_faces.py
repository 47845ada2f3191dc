"""msi_credential/_transport/policies.py through both faces (from the former test_credential_common.py): the
pipeline keywords reach the request, the caller's policies run after ours, and policies that would break a
guarantee, or belong to the other face, are refused."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityCredential

from ..faces.support import STORAGE


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
