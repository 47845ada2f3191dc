"""What every source shares: the table of specs (``_engine/sources/__init__.py``) and what a ``SourceSpec``
(``_engine/sources/_spec.py``) holds and builds, as data with a row per source; then the same behaviours through the
scripted driver (tests/engine/scripted.py, no sockets) and through the public credential on both faces against the
emulator. What only one source does stays in its own ``test_<source>.py``."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.identity import Identity, SelectorKind
from msi_credential._engine.sources import (
    SPECS,
    RequestParts,
    app_service,
    azure_arc,
    cloud_shell,
    imds,
    machine_learning,
    service_fabric,
    workload_identity,
)
from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import Emulator, Fault, UserAssignedIdentity, decode_jwt

from ..scripted import Clock, Script, engine, token_response
from .support import (
    APP_SERVICE_URL,
    ARC_URL,
    ASSERTION,
    CLOUD_SHELL_URL,
    FORM,
    GUID,
    IMDS_URL,
    ML_URL,
    PARTS,
    PIN,
    RESOURCE,
    RESOURCE_ID,
    SCRIPTED_ENVIRON,
    SECRET,
    SF_URL,
    WI_URL,
    assertion,
    build,
    shared,
    user,
    wi_parts,
)

ENGINE = Path(__file__).resolve().parents[3] / "msi_credential" / "_engine"


# ---------------------------------------------------------------------------------- the table of specs


def test_every_source_has_a_spec() -> None:
    assert set(SPECS) == set(S)
    for source, spec in SPECS.items():
        assert spec.source is source


@pytest.mark.parametrize(
    ("source", "selectors"),
    [
        (S.IMDS, {"client_id": "client_id", "object_id": "object_id", "resource_id": "msi_res_id"}),
        (S.APP_SERVICE, {"client_id": "client_id", "object_id": "object_id", "resource_id": "mi_res_id"}),
        (S.AZURE_ARC, {"client_id": "client_id", "object_id": "object_id", "resource_id": "msi_res_id"}),
        (S.CLOUD_SHELL, {}),
        (S.SERVICE_FABRIC, {"object_id": "principalId"}),
        (S.MACHINE_LEARNING, {"client_id": "clientid"}),
        (S.WORKLOAD_IDENTITY, {"client_id": "client_id"}),
    ],
)
def test_spec_selectors_say_which_user_assigned_ids_a_source_takes(
    source: S, selectors: dict[str, str]
) -> None:
    assert dict(SPECS[source].selectors) == selectors


def test_spec_flags() -> None:
    assert SPECS[S.IMDS].retry == "imds"
    assert {source for source, spec in SPECS.items() if spec.retry == "imds"} == {S.IMDS}
    assert {source for source, spec in SPECS.items() if spec.challenge} == {S.AZURE_ARC}
    assert {source for source, spec in SPECS.items() if spec.supports_revocation} == {S.SERVICE_FABRIC}
    assert {source for source, spec in SPECS.items() if spec.reads_assertion} == {S.WORKLOAD_IDENTITY}


def test_each_spec_field_belongs_to_the_sources_that_have_it() -> None:
    assert {source for source, spec in SPECS.items() if spec.absence is not None} == {S.IMDS}
    assert {source for source, spec in SPECS.items() if spec.confirm is not None} == {S.AZURE_ARC}
    assert {source for source, spec in SPECS.items() if spec.check is not None} == {S.WORKLOAD_IDENTITY}
    assert {source for source, spec in SPECS.items() if not spec.machine_cache} == {
        S.SERVICE_FABRIC,
        S.WORKLOAD_IDENTITY,
    }
    assert {source for source, spec in SPECS.items() if spec.read_error is not None} == {
        S.IMDS,
        S.APP_SERVICE,
        S.SERVICE_FABRIC,
    }


def test_every_source_has_a_distinct_label() -> None:
    labels = [spec.label for spec in SPECS.values()]
    assert all(labels) and len(set(labels)) == len(labels)


@pytest.mark.parametrize(
    "name", ["flow.py", "response.py", "cache.py", "retry.py", "expiry.py", "effects.py"]
)
def test_the_engine_outside_detection_and_sources_names_no_source(name: str) -> None:
    text = (ENGINE / name).read_text(encoding="utf-8")
    assert re.findall(r"ManagedIdentitySource\.[A-Z_]+", text) == []


def test_modules_declare_the_protocol_api_versions() -> None:
    assert imds.API_VERSION == "2018-02-01"
    assert app_service.API_VERSION == "2019-08-01"
    assert azure_arc.API_VERSION == "2020-06-01"
    assert service_fabric.API_VERSION == "2020-05-01"
    assert machine_learning.API_VERSION == "2017-09-01"
    assert workload_identity.ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert cloud_shell.SPEC.selectors == {}


# --------------------------------------------------------------------- the request every source builds


# What each source sends for a system-assigned token (docs/protocols.md sections 2, 6, 8 and 10): the method, URL
# and query; the headers (a secret header carries the configured secret); the form, the certificate pin, and the
# sources whose requests go through proxies (the others send none, have none, go direct).
REQUEST_LINES = {
    S.IMDS: ("GET", IMDS_URL, (("api-version", "2018-02-01"), ("resource", RESOURCE))),
    S.APP_SERVICE: ("GET", APP_SERVICE_URL, (("api-version", "2019-08-01"), ("resource", RESOURCE))),
    S.AZURE_ARC: ("GET", ARC_URL, (("api-version", "2020-06-01"), ("resource", RESOURCE))),
    S.CLOUD_SHELL: ("POST", CLOUD_SHELL_URL, ()),
    S.SERVICE_FABRIC: ("GET", SF_URL, (("api-version", "2020-05-01"), ("resource", RESOURCE))),
    S.MACHINE_LEARNING: ("GET", ML_URL, (("api-version", "2017-09-01"), ("resource", RESOURCE))),
    S.WORKLOAD_IDENTITY: ("POST", WI_URL, ()),
}
HEADERS = {
    S.IMDS: {"Metadata": "true"},
    S.APP_SERVICE: {"X-IDENTITY-HEADER": SECRET},
    S.AZURE_ARC: {"Metadata": "true"},  # no Authorization: the key file's secret answers the challenge
    S.CLOUD_SHELL: {"Metadata": "true", "Content-Type": FORM},
    S.SERVICE_FABRIC: {"Secret": SECRET},
    S.MACHINE_LEARNING: {"secret": SECRET, "Metadata": "true"},
    S.WORKLOAD_IDENTITY: {"Content-Type": FORM},
}
FORMS = {
    S.CLOUD_SHELL: {"resource": RESOURCE},
    S.WORKLOAD_IDENTITY: {
        "client_assertion": ASSERTION,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_id": "env-client",
        "grant_type": "client_credentials",
        "scope": RESOURCE + "/.default",
    },
}
PINS = {S.SERVICE_FABRIC: PIN}
PROXIED = {S.WORKLOAD_IDENTITY}


@pytest.mark.parametrize("source", list(S), ids=lambda source: source.value)
def test_system_assigned_request(source: S) -> None:
    request = build(source, parts=wi_parts() if source is S.WORKLOAD_IDENTITY else PARTS)
    assert (request.method, request.url, request.params) == REQUEST_LINES[source]
    assert dict(request.headers) == HEADERS[source]
    assert "Authorization" not in request.headers
    assert (request.form is None) is (source not in FORMS)
    assert dict(request.form or {}) == FORMS.get(source, {})
    assert request.pin_sha1 == PINS.get(source)
    assert bool(request.use_proxies) is (source in PROXIED)
    assert (request.connect_timeout, request.read_timeout) == (2.0, 10.0)


def test_timeouts_come_from_parts() -> None:
    request = build(S.IMDS, parts=RequestParts(resource=RESOURCE, connect_timeout=1.0, read_timeout=3.5))
    assert (request.connect_timeout, request.read_timeout) == (1.0, 3.5)


# The query parameter each source names a user-assigned identity by: (source, api-version, the wire names of
# client_id, object_id and resource_id).
QUERY_SELECTORS = [
    (S.IMDS, "2018-02-01", ("client_id", "object_id", "msi_res_id")),
    (S.APP_SERVICE, "2019-08-01", ("client_id", "object_id", "mi_res_id")),
    (S.AZURE_ARC, "2020-06-01", ("client_id", "object_id", "msi_res_id")),
]
KINDS: tuple[SelectorKind, ...] = ("client_id", "object_id", "resource_id")


@pytest.mark.parametrize(
    ("source", "api_version", "kind", "value", "wire"),
    [
        pytest.param(
            source,
            api_version,
            kind,
            RESOURCE_ID if kind == "resource_id" else GUID,
            wire,
            id=f"{source.value}-{kind}",
        )
        for source, api_version, wires in QUERY_SELECTORS
        for kind, wire in zip(KINDS, wires)
    ]
    + [
        # the sources that take one selector (change: Service Fabric builds without its selector table)
        pytest.param(
            S.SERVICE_FABRIC, "2020-05-01", "object_id", GUID, "principalId", id="service_fabric-object_id"
        ),
        pytest.param(
            S.MACHINE_LEARNING, "2017-09-01", "client_id", GUID, "clientid", id="machine_learning-client_id"
        ),
    ],
)
def test_user_assigned_selector_follows_resource_under_the_sources_wire_name(
    source: S, api_version: str, kind: SelectorKind, value: str, wire: str
) -> None:
    request = build(source, user(kind, value))
    assert request.params == (("api-version", api_version), ("resource", RESOURCE), (wire, value))
    names = [name for name, _ in request.params]
    assert not ({"msi_res_id", "mi_res_id", "resource_id"} - {wire}) & set(names)


@pytest.mark.parametrize("source", [S.IMDS, S.APP_SERVICE, S.AZURE_ARC, S.CLOUD_SHELL, S.MACHINE_LEARNING])
def test_other_sources_never_send_xms_cc_claims_or_revocation(source: S) -> None:
    parts = RequestParts(
        resource=RESOURCE,
        connect_timeout=2.0,
        read_timeout=10.0,
        capabilities=("cp1",),
        token_sha256_to_refresh="b" * 64,
        claims='{"access_token":{}}',
    )
    request = build(source, parts=parts)
    sent = {name for name, _ in request.params} | set(request.form or {})
    assert not sent & {"xms_cc", "claims", "token_sha256_to_refresh", "tenant_id"}


# extra identity_config keys


@pytest.mark.parametrize(
    ("source", "api_version", "wire"),
    [
        (S.IMDS, "2018-02-01", "client_id"),
        (S.APP_SERVICE, "2019-08-01", "client_id"),
        (S.AZURE_ARC, "2020-06-01", "client_id"),
        (S.MACHINE_LEARNING, "2017-09-01", "clientid"),
    ],
)
def test_extra_keys_are_appended_after_the_selector(source: S, api_version: str, wire: str) -> None:
    request = build(source, user("client_id", GUID, foo="1", bar="2"))
    assert request.params == (
        ("api-version", api_version),
        ("resource", RESOURCE),
        (wire, GUID),
        ("foo", "1"),
        ("bar", "2"),
    )


@pytest.mark.parametrize("source", [S.IMDS, S.APP_SERVICE, S.AZURE_ARC, S.MACHINE_LEARNING, S.SERVICE_FABRIC])
def test_extra_keys_never_override_engine_set_parameters(source: S) -> None:
    parts = RequestParts(resource=RESOURCE, connect_timeout=2.0, read_timeout=10.0, capabilities=("cp1",))
    identity = Identity(
        extra=(("api-version", "1999-01-01"), ("resource", "https://evil"), ("xms_cc", "x"), ("k", "v"))
    )
    request = build(source, identity, parts=parts)
    params = list(request.params)
    names = [name for name, _ in params]
    assert len(names) == len(set(names))
    assert dict(params)["resource"] == RESOURCE
    assert dict(params)["api-version"] != "1999-01-01"
    assert params[-1] == ("k", "v")
    if source is S.SERVICE_FABRIC:
        assert dict(params)["xms_cc"] == "cp1"


def test_extra_key_never_overrides_the_selector_or_default_client_id() -> None:
    request = build(S.IMDS, user("client_id", GUID, client_id="other"))
    assert [value for name, value in request.params if name == "client_id"] == [GUID]
    request = build(
        S.MACHINE_LEARNING, Identity(extra=(("clientid", "other"),)), default_client_id="ml-default"
    )
    assert [value for name, value in request.params if name == "clientid"] == ["ml-default"]


def test_extra_keys_do_not_touch_headers() -> None:
    request = build(S.APP_SERVICE, Identity(extra=(("X-IDENTITY-HEADER", "forged"),)))
    assert dict(request.headers) == {"X-IDENTITY-HEADER": SECRET}


# secrets stay out of repr


@pytest.mark.parametrize("source", list(S))
def test_request_repr_never_contains_header_values_or_assertion(source: S) -> None:
    request = build(source, parts=wi_parts())
    text = repr(request)
    for value in request.headers.values():
        if value and value not in ("true", FORM):
            assert value not in text
    assert SECRET not in text
    assert ASSERTION not in text
    assert SECRET not in str(request)


# ------------------------------------------------------------------------- through the scripted driver


@pytest.mark.parametrize(
    ("environ", "answers"),
    [
        pytest.param(SCRIPTED_ENVIRON[S.APP_SERVICE], 0, id="app_service"),
        pytest.param(SCRIPTED_ENVIRON[S.AZURE_ARC], 0, id="azure_arc"),
        pytest.param(SCRIPTED_ENVIRON[S.CLOUD_SHELL], 0, id="cloud_shell"),
        pytest.param(SCRIPTED_ENVIRON[S.IMDS], 0, id="imds"),
        pytest.param(SCRIPTED_ENVIRON[S.MACHINE_LEARNING], 0, id="machine_learning"),
        pytest.param(SCRIPTED_ENVIRON[S.SERVICE_FABRIC], 0, id="service_fabric"),
        pytest.param(SCRIPTED_ENVIRON[S.WORKLOAD_IDENTITY], 1, id="workload_identity"),
    ],
)
def test_the_timeout_keywords_reach_every_sources_request(environ: dict[str, str], answers: int) -> None:
    clock = Clock()
    script = Script(clock).queue(*[assertion()] * answers, token_response("t"))

    credential_engine = engine(environ, clock, connection_timeout=0.5, read_timeout=3, _platform="linux")
    script.run(credential_engine.acquire(RESOURCE))

    assert [(request.connect_timeout, request.read_timeout) for request in script.sent] == [(0.5, 3.0)]


@pytest.mark.parametrize(
    ("environ", "answers"),
    [
        (SCRIPTED_ENVIRON[S.SERVICE_FABRIC], [token_response("sf")]),
        (SCRIPTED_ENVIRON[S.WORKLOAD_IDENTITY], [assertion(), token_response("wi")]),
    ],
    ids=["service-fabric", "workload-identity"],
)
def test_service_fabric_and_workload_identity_never_use_the_machine_cache(
    environ: dict[str, str], answers: list[Any]
) -> None:
    clock = Clock()
    script = Script(clock).queue(*answers)

    script.run(shared(environ, clock).acquire(RESOURCE))

    assert script.lookups == [] and script.stores == []


# -------------------------------------------- through the credential, both faces, against the emulator


IDENTITY = UserAssignedIdentity(
    client_id="aaaaaaaa-1111-1111-1111-111111111111",
    object_id="bbbbbbbb-2222-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/a",
)
# Every spelling a source uses on the wire for a user-assigned selector (or that another source uses).
SELECTOR_SPELLINGS = frozenset(
    {"client_id", "clientid", "object_id", "principalId", "msi_res_id", "mi_res_id", "resource_id"}
)
METADATA_PATH = "/metadata/identity/oauth2/token"


@dataclass(frozen=True)
class Source:
    """One source's data for the shared bodies below."""

    name: str  # the emulator's name for it (the source's value), also the test id
    audience: str  # the token's; the scope asked for is its /.default
    method: str = "GET"
    path: str = METADATA_PATH
    scheme: str = "http"
    api_version: Optional[str] = None  # the query is the api-version and the audience (system-assigned)
    form: Optional[dict[str, str]] = None  # the whole form, when the request has one
    requests_per_token: int = 1
    # header name -> what the request carries: a value, as a pattern (fnmatch: "*" is any text); "$NAME", the value
    # of the emulator's variable NAME; None, no such header
    headers: dict[str, Optional[str]] = field(default_factory=dict)
    selectors: dict[str, str] = field(default_factory=dict)  # credential keyword -> its wire name
    tls: bool = False
    emulator_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def enum(self) -> ManagedIdentitySource:
        return ManagedIdentitySource(self.name)

    @property
    def scope(self) -> str:
        return self.audience + "/.default"

    @property
    def variables(self) -> list[str]:
        """The emulator variables whose values the request carries in a header (the endpoint's secret)."""
        return [value[1:] for value in self.headers.values() if value and value.startswith("$")]

    @property
    def query(self) -> dict[str, str]:
        """The whole query for ``scope``, system-assigned."""
        return (
            {} if self.api_version is None else {"api-version": self.api_version, "resource": self.audience}
        )


STORAGE, VAULT, ARM = "https://storage.azure.com", "https://vault.azure.net", "https://management.azure.com"
IMDS = Source(
    "imds",
    STORAGE,
    api_version="2018-02-01",
    headers={
        "metadata": "true",
        "user-agent": "*msi-credential/*",
        "x-ms-client-request-id": "*",
        "authorization": None,
    },
    selectors={"client_id": "client_id", "object_id": "object_id", "resource_id": "msi_res_id"},
)
APP_SERVICE = Source(
    "app_service",
    VAULT,
    path="/msi/token",
    api_version="2019-08-01",
    headers={"x-identity-header": "$IDENTITY_HEADER", "metadata": None},
    selectors={"client_id": "client_id", "object_id": "object_id", "resource_id": "mi_res_id"},
)
AZURE_ARC = Source(
    "azure_arc",
    ARM,
    api_version="2020-06-01",
    requests_per_token=2,  # the challenge, then the answer (test_azure_arc.py checks the key)
    headers={"metadata": "true"},
    selectors={"client_id": "client_id", "object_id": "object_id", "resource_id": "msi_res_id"},
)
CLOUD_SHELL = Source(
    "cloud_shell",
    ARM,
    form={"resource": ARM},
    method="POST",
    path="/oauth2/token",
    headers={"metadata": "true", "content-type": "application/x-www-form-urlencoded*"},
)
SERVICE_FABRIC = Source(
    "service_fabric",
    VAULT,
    scheme="https",
    api_version="2020-05-01",
    headers={"secret": "$IDENTITY_HEADER"},
    selectors={"object_id": "principalId"},
    tls=True,
)
MACHINE_LEARNING = Source(
    "machine_learning",
    STORAGE,
    path="/MSI/auth",
    api_version="2017-09-01",
    headers={"secret": "$MSI_SECRET", "metadata": "true"},
    selectors={"client_id": "clientid"},
)
WORKLOAD_IDENTITY = Source(
    "workload_identity",
    STORAGE,
    method="POST",
    path="/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token",
    emulator_kwargs={"identities": [IDENTITY]},
)

# The request itself: workload identity's form carries the federated assertion, so test_workload_identity.py
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


@pytest.fixture
def start(emulator_factory: Any, request: pytest.FixtureRequest) -> Callable[..., Emulator]:
    """Start the emulator for a source row (Service Fabric with the ``tls_cert`` certificate for 127.0.0.1)."""

    def start_source(source: Source, **kwargs: Any) -> Emulator:
        kwargs = {**source.emulator_kwargs, **kwargs}
        if source.tls:
            kwargs["tls_cert"] = request.getfixturevalue("tls_cert")
        started: Emulator = emulator_factory(source.name, **kwargs)
        return started

    return start_source


# the request


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
        for name, expected in source.headers.items():
            if expected is None:
                assert name not in request.headers
            elif expected.startswith("$"):
                assert request.headers[name] == emulator.environ[expected[1:]]
            else:
                assert fnmatch.fnmatchcase(request.headers[name], expected)


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


# errors


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


# retries


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


# refusals


ALL_SOURCES = [*EXACT_REQUEST, WORKLOAD_IDENTITY]


WITH_SECRET = [source for source in EXACT_REQUEST if source.variables]


@pytest.mark.parametrize("source", WITH_SECRET, ids=ids)
def test_source_wrong_secret_fails_as_rejected_without_echoing_it(
    face: Any, start: Callable[..., Emulator], source: Source
) -> None:
    emulator = start(source)
    [variable] = source.variables
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


# Not IMDS: a redirect without a JSON body means no IMDS there, unavailable
# (tests/engine/test_response.py::test_imds_non_json_redirect_is_unavailable_imds_unreachable); with a JSON body it is
# refused like this (test_imds.py::test_imds_redirect_at_first_contact_is_an_unexpected_redirect).
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


# the cache


@pytest.mark.parametrize("source", ALL_SOURCES, ids=ids)
def test_source_cached_token_is_served_for_scope_or_resource_and_token_info_without_a_request(
    source: Source, face: Any, start: Callable[..., Emulator]
) -> None:
    emulator = start(source)
    credential = face.credential(emulator)

    first = credential.get_token(source.scope)
    second = credential.get_token(source.audience)
    info = credential.get_token_info(source.scope)

    assert first.token == second.token == info.token
    assert emulator.tokens_issued == 1
    assert info.refresh_on is not None and info.refresh_on < info.expires_on
