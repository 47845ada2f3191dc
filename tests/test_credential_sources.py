"""What every source does alike, through the public credential on both faces: one body per behaviour, one data row
per source. What only one source does stays in its own ``test_credential_<source>.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import trustme

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential.emulator import Emulator, Fault, UserAssignedIdentity, decode_jwt

IDENTITY = UserAssignedIdentity(
    client_id="aaaaaaaa-1111-1111-1111-111111111111",
    object_id="bbbbbbbb-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a",
)
# Every spelling a source uses on the wire for a user-assigned selector (or that another source uses).
SELECTOR_SPELLINGS = frozenset(
    {"client_id", "clientid", "object_id", "principalId", "msi_res_id", "mi_res_id", "resource_id"}
)
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
METADATA_PATH = "/metadata/identity/oauth2/token"


@dataclass(frozen=True)
class Source:
    """One source's data for the shared bodies below."""

    name: str  # the emulator's name for it, also the test id
    enum: ManagedIdentitySource
    scope: str
    audience: str
    method: str = "GET"
    path: str = METADATA_PATH
    scheme: str = "http"
    query: dict[str, str] = field(default_factory=dict)  # the whole query for ``scope``, system-assigned
    form: dict[str, str] | None = None  # the whole form, when the request has one
    requests_per_token: int = 1
    # header name -> the emulator variable whose value it carries, or the literal value
    header_from_variable: dict[str, str] = field(default_factory=dict)
    header_values: dict[str, str] = field(default_factory=dict)
    header_prefixes: dict[str, str] = field(default_factory=dict)
    header_substrings: dict[str, str] = field(default_factory=dict)
    headers_present: tuple[str, ...] = ()
    headers_absent: tuple[str, ...] = ()
    selectors: dict[str, str] = field(default_factory=dict)  # credential keyword -> its wire name
    tls: bool = False
    emulator_kwargs: dict[str, Any] = field(default_factory=dict)


IMDS = Source(
    "imds",
    ManagedIdentitySource.IMDS,
    "https://storage.azure.com/.default",
    "https://storage.azure.com",
    query={"api-version": "2018-02-01", "resource": "https://storage.azure.com"},
    header_values={"metadata": "true"},
    header_substrings={"user-agent": "msi-credential/"},
    headers_present=("x-ms-client-request-id",),
    headers_absent=("authorization",),
    selectors={"client_id": "client_id", "object_id": "object_id", "resource_id": "msi_res_id"},
)
APP_SERVICE = Source(
    "app_service",
    ManagedIdentitySource.APP_SERVICE,
    "https://vault.azure.net/.default",
    "https://vault.azure.net",
    path="/msi/token",
    query={"api-version": "2019-08-01", "resource": "https://vault.azure.net"},
    header_from_variable={"x-identity-header": "IDENTITY_HEADER"},
    headers_absent=("metadata",),
    selectors={"client_id": "client_id", "object_id": "object_id", "resource_id": "mi_res_id"},
)
AZURE_ARC = Source(
    "azure_arc",
    ManagedIdentitySource.AZURE_ARC,
    "https://management.azure.com/.default",
    "https://management.azure.com",
    query={"api-version": "2020-06-01", "resource": "https://management.azure.com"},
    requests_per_token=2,  # the challenge, then the answer (test_credential_azure_arc.py checks the key)
    header_values={"metadata": "true"},
    selectors={"client_id": "client_id", "object_id": "object_id", "resource_id": "msi_res_id"},
)
CLOUD_SHELL = Source(
    "cloud_shell",
    ManagedIdentitySource.CLOUD_SHELL,
    "https://management.azure.com/.default",
    "https://management.azure.com",
    method="POST",
    path="/oauth2/token",
    form={"resource": "https://management.azure.com"},
    header_values={"metadata": "true"},
    header_prefixes={"content-type": "application/x-www-form-urlencoded"},
)
SERVICE_FABRIC = Source(
    "service_fabric",
    ManagedIdentitySource.SERVICE_FABRIC,
    "https://vault.azure.net/.default",
    "https://vault.azure.net",
    scheme="https",
    query={"api-version": "2020-05-01", "resource": "https://vault.azure.net"},
    header_from_variable={"secret": "IDENTITY_HEADER"},
    selectors={"object_id": "principalId"},
    tls=True,
)
MACHINE_LEARNING = Source(
    "machine_learning",
    ManagedIdentitySource.MACHINE_LEARNING,
    "https://storage.azure.com/.default",
    "https://storage.azure.com",
    path="/MSI/auth",
    query={"api-version": "2017-09-01", "resource": "https://storage.azure.com"},
    header_from_variable={"secret": "MSI_SECRET"},
    header_values={"metadata": "true"},
    selectors={"client_id": "clientid"},
)
WORKLOAD_IDENTITY = Source(
    "workload_identity",
    ManagedIdentitySource.WORKLOAD_IDENTITY,
    "https://storage.azure.com/.default",
    "https://storage.azure.com",
    method="POST",
    path="/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token",
    emulator_kwargs={"identities": [IDENTITY]},
)

# The request itself: workload identity's form carries the federated assertion, so test_credential_workload_identity.py
# checks its exact request.
EXACT_REQUEST = [IMDS, APP_SERVICE, AZURE_ARC, CLOUD_SHELL, SERVICE_FABRIC, MACHINE_LEARNING]
TAKEN_SELECTORS = [(source, keyword) for source in EXACT_REQUEST for keyword in source.selectors]
# Selectors each source refuses before any request (workload identity's identity_config spellings are its own).
REFUSED_SELECTORS: list[tuple[Source, str]] = [
    (CLOUD_SHELL, "client_id"),
    (CLOUD_SHELL, "object_id"),
    (CLOUD_SHELL, "resource_id"),
    (SERVICE_FABRIC, "client_id"),
    (SERVICE_FABRIC, "resource_id"),
    (MACHINE_LEARNING, "object_id"),
    (MACHINE_LEARNING, "resource_id"),
    (WORKLOAD_IDENTITY, "object_id"),
    (WORKLOAD_IDENTITY, "resource_id"),
]


def ids(source: Source) -> str:
    return source.name


def pair_id(value: Any) -> str:
    return value.name if isinstance(value, Source) else str(value)


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workload identity honours proxy variables: keep the machine's own out of these tests."""
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def start(emulator_factory: Any, tmp_path: Path) -> Callable[..., Emulator]:
    """Start the emulator for a source row (Service Fabric with a certificate for 127.0.0.1 from a throwaway CA)."""

    def start_source(source: Source, **kwargs: Any) -> Emulator:
        kwargs = {**source.emulator_kwargs, **kwargs}
        if source.tls:
            server = trustme.CA().issue_cert("127.0.0.1", "localhost")
            cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
            server.cert_chain_pems[0].write_to_path(str(cert))
            server.private_key_pem.write_to_path(str(key))
            kwargs["tls_cert"] = (str(cert), str(key))
        started: Emulator = emulator_factory(source.name, **kwargs)
        return started

    return start_source


# ---------------------------------------------------------------------------------------------- the request


@pytest.mark.parametrize("source", EXACT_REQUEST, ids=ids)
def test_source_returns_a_token_for_the_audience_and_sends_its_exact_request(
    face: Any, start: Callable[..., Emulator], source: Source
) -> None:
    emulator = start(source)
    credential = face.credential(emulator)
    assert credential.source is source.enum

    token = credential.get_token(source.scope)

    assert decode_jwt(token.token)["aud"] == source.audience
    assert len(emulator.requests) == source.requests_per_token
    for request in emulator.requests:
        assert request.method == source.method
        assert request.path == source.path
        assert request.scheme == source.scheme
        assert request.query == source.query
        if source.form is not None:
            assert request.form == source.form
        for name, variable in source.header_from_variable.items():
            assert request.headers[name] == emulator.environ[variable]
        for name, value in source.header_values.items():
            assert request.headers[name] == value
        for name, prefix in source.header_prefixes.items():
            assert request.headers[name].startswith(prefix)
        for name, part in source.header_substrings.items():
            assert part in request.headers[name]
        for name in source.headers_present:
            assert name in request.headers
        for name in source.headers_absent:
            assert name not in request.headers


@pytest.mark.parametrize(("source", "keyword"), TAKEN_SELECTORS, ids=pair_id)
def test_source_sends_a_user_assigned_selector_under_its_wire_name_alone_and_gets_that_identity(
    face: Any, start: Callable[..., Emulator], source: Source, keyword: str
) -> None:
    wire_name = source.selectors[keyword]
    value = getattr(IDENTITY, keyword)
    emulator = start(source, identities=[IDENTITY])
    credential = face.credential(emulator, **{keyword: value})

    token = credential.get_token(source.scope)

    claims = decode_jwt(token.token)
    assert claims["appid"] == IDENTITY.client_id
    assert claims["oid"] == IDENTITY.object_id
    assert len(emulator.requests) == source.requests_per_token
    for request in emulator.requests:
        assert request.query[wire_name] == value
        assert set(request.query) == {"api-version", "resource", wire_name}
        for other in SELECTOR_SPELLINGS - {wire_name}:
            assert other not in request.query


@pytest.mark.parametrize(("source", "keyword"), REFUSED_SELECTORS, ids=pair_id)
def test_source_refuses_a_selector_it_does_not_take_before_any_request(
    face: Any, start: Callable[..., Emulator], source: Source, keyword: str
) -> None:
    emulator = start(source)
    credential = face.credential(emulator, **{keyword: getattr(IDENTITY, keyword)})

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(source.scope)

    assert caught.value.error_code == "user_assigned_not_supported"
    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.source is source.enum
    assert emulator.requests == []


# ---------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("source", "status", "correlated"), [(IMDS, 400, False), (APP_SERVICE, 400, True)], ids=pair_id
)
def test_source_unknown_identity_is_unavailable_with_its_status_and_correlation_id(
    face: Any, start: Callable[..., Emulator], source: Source, status: int, correlated: bool
) -> None:
    emulator = start(source)
    credential = face.credential(emulator, client_id="cccccccc-3333-3333-3333-333333333333")

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(source.scope)

    assert caught.value.error_code == "identity_not_found"
    assert caught.value.status_code == status
    assert bool(caught.value.correlation_id) is correlated  # IMDS answers with no correlation id
    assert caught.value.source is source.enum


@pytest.mark.parametrize(
    ("source", "environ"),
    [
        (
            APP_SERVICE,
            {"IDENTITY_ENDPOINT": "http://10.0.0.1:8081/msi/token", "IDENTITY_HEADER": "secret-value"},
        ),
        (
            SERVICE_FABRIC,
            {
                "IDENTITY_ENDPOINT": "http://127.0.0.1:2377/metadata/identity/oauth2/token",
                "IDENTITY_HEADER": "secret-value",
                "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
            },
        ),
    ],
    ids=["app_service-off-this-machine", "service_fabric-plain-http"],
)
def test_source_endpoint_it_may_not_use_is_refused_before_any_socket_naming_the_variable(
    face: Any, socket_guard: list[str], source: Source, environ: dict[str, str]
) -> None:
    credential = face.credential(_environ=environ)
    assert credential.source is source.enum

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(source.scope)

    assert caught.value.error_code == "invalid_endpoint"
    assert "IDENTITY_ENDPOINT" in str(caught.value)
    assert "secret-value" not in str(caught.value)
    assert socket_guard == []


# ---------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize(("source", "seconds"), [(APP_SERVICE, "7"), (WORKLOAD_IDENTITY, "3")], ids=pair_id)
def test_source_waits_as_long_as_retry_after_says(
    face: Any, start: Callable[..., Emulator], source: Source, seconds: str
) -> None:
    emulator = start(source)
    emulator.script(Fault(429, headers={"Retry-After": seconds}))
    credential = face.credential(emulator)

    credential.get_token(source.scope)

    assert face.sleeps == [float(seconds)]


@pytest.mark.parametrize(
    ("source", "statuses", "sleeps"),
    [(IMDS, (429, 503, 500), [1.0, 2.0, 4.0]), (WORKLOAD_IDENTITY, (429, 503), [1.0, 2.0])],
    ids=["imds-three", "workload_identity-two"],
)
def test_source_retries_throttling_and_server_errors_doubling_the_wait_then_succeeds(
    face: Any, start: Callable[..., Emulator], source: Source, statuses: tuple[int, ...], sleeps: list[float]
) -> None:
    emulator = start(source)
    emulator.script(*(Fault(status) for status in statuses))
    credential = face.credential(emulator)

    token = credential.get_token(source.scope)

    assert decode_jwt(token.token)["aud"] == source.audience
    assert len(emulator.requests) == len(statuses) + 1
    assert face.sleeps == sleeps


# ---------------------------------------------------------------------------------------------- refusals

ALL_SOURCES = [*EXACT_REQUEST, WORKLOAD_IDENTITY]
WITH_SECRET = [source for source in EXACT_REQUEST if source.header_from_variable]


@pytest.mark.parametrize("source", WITH_SECRET, ids=ids)
def test_source_wrong_secret_fails_as_rejected_without_echoing_it(
    face: Any, start: Callable[..., Emulator], source: Source
) -> None:
    emulator = start(source)
    [variable] = source.header_from_variable.values()
    environ = dict(emulator.environ, **{variable: "not-the-right-secret-value"})
    credential = face.credential(emulator, _environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(source.scope)

    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.status_code in (401, 403)
    assert "not-the-right-secret-value" not in str(caught.value)
    assert "not-the-right-secret-value" not in repr(caught.value)


# Not IMDS: it retries 404 too (an identity just assigned may not have reached it yet).
@pytest.mark.parametrize("source", [s for s in ALL_SOURCES if s is not IMDS], ids=ids)
def test_source_retries_a_server_error_but_not_404(
    face: Any, start: Callable[..., Emulator], source: Source
) -> None:
    emulator = start(source)
    emulator.script(Fault(500), Fault(404))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(source.scope)

    assert caught.value.status_code == 404
    assert len(emulator.requests) == 2
    assert face.sleeps == [1.0]


# Not IMDS: its first contact takes an answer that is not IMDS's for no IMDS (test_imds_non_json_answer_means_not_imds).
@pytest.mark.parametrize("source", [s for s in ALL_SOURCES if s is not IMDS], ids=ids)
def test_source_redirect_is_refused_and_not_followed(
    face: Any, start: Callable[..., Emulator], source: Source
) -> None:
    emulator = start(source)
    emulator.script(Fault(302, b"", {"Location": "http://127.0.0.1:9/steal"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(source.scope)

    assert caught.value.error_code == "unexpected_redirect"
    assert len(emulator.requests) == 1


# ---------------------------------------------------------------------------------------------- the cache


@pytest.mark.parametrize("source", ALL_SOURCES, ids=ids)
def test_source_cached_token_is_served_for_scope_or_resource_and_token_info_without_a_request(
    face: Any, start: Callable[..., Emulator], source: Source
) -> None:
    emulator = start(source)
    credential = face.credential(emulator)

    first = credential.get_token(source.scope)
    second = credential.get_token(source.audience)
    info = credential.get_token_info(source.scope)

    assert first.token == second.token == info.token
    assert emulator.tokens_issued == 1
    assert info.refresh_on is not None and info.refresh_on < info.expires_on
