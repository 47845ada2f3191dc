"""Each source's build(config, identity, parts): the exact request of docs/protocols.md sections 2, 6, 8 and 10."""

from __future__ import annotations

import json
from typing import Any

import pytest

from msi_credential._engine.detection import SourceConfig
from msi_credential._engine.effects import Request
from msi_credential._engine.identity import Identity, SelectorKind
from msi_credential._engine.record import replace
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

RESOURCE = "https://storage.azure.com"
GUID = "0b7a6d1c-2f0e-4c2b-9a57-8f7d2e1c3b4a"
RESOURCE_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"
SECRET = "header-secret-value-4f9c"
THUMBPRINT = "AB:CD:" + "0123456789abcdef0123456789abcdef0123"
PIN = "abcd0123456789abcdef0123456789abcdef0123"
ASSERTION = "eyJhbGciOiJSUzI1NiJ9.assertion-payload.signature"
PARTS = RequestParts(resource=RESOURCE, connect_timeout=2.0, read_timeout=10.0)
SYSTEM = Identity()
FORM = "application/x-www-form-urlencoded"

IMDS_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
APP_SERVICE_URL = "http://localhost:42356/msi/token"
ARC_URL = "http://127.0.0.1:40342/metadata/identity/oauth2/token"
CLOUD_SHELL_URL = "http://localhost:50342/oauth2/token"
SF_URL = "https://10.0.0.4:2377/metadata/identity/oauth2/token"
ML_URL = "http://127.0.0.1:46808/MSI/auth"
WI_URL = "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"

CONFIGS = {
    S.IMDS: SourceConfig(S.IMDS, IMDS_URL),
    S.APP_SERVICE: SourceConfig(S.APP_SERVICE, APP_SERVICE_URL, "IDENTITY_ENDPOINT", secret=SECRET),
    S.AZURE_ARC: SourceConfig(S.AZURE_ARC, ARC_URL),
    S.CLOUD_SHELL: SourceConfig(S.CLOUD_SHELL, CLOUD_SHELL_URL, "MSI_ENDPOINT"),
    S.SERVICE_FABRIC: SourceConfig(
        S.SERVICE_FABRIC, SF_URL, "IDENTITY_ENDPOINT", secret=SECRET, thumbprint=THUMBPRINT
    ),
    S.MACHINE_LEARNING: SourceConfig(S.MACHINE_LEARNING, ML_URL, "MSI_ENDPOINT", secret=SECRET),
    S.WORKLOAD_IDENTITY: SourceConfig(
        S.WORKLOAD_IDENTITY,
        WI_URL,
        "AZURE_AUTHORITY_HOST",
        tenant_id="tenant",
        client_id="env-client",
        token_file="/var/run/token",
    ),
}


def user(kind: SelectorKind, value: str = GUID, **extra: str) -> Identity:
    return Identity(kind=kind, value=value, extra=tuple(extra.items()))


def build(source: S, identity: Identity = SYSTEM, parts: RequestParts = PARTS, **config: Any) -> Request:
    base = CONFIGS[source]
    if config:
        base = replace(base, **config)
    return SPECS[source].build(base, identity, parts)


# --- the table of specs ---------------------------------------------------------------------------------------


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


# --- IMDS -----------------------------------------------------------------------------------------------------


def test_imds_system_assigned_request() -> None:
    request = build(S.IMDS)
    assert request.method == "GET"
    assert request.url == IMDS_URL
    assert request.params == (("api-version", "2018-02-01"), ("resource", RESOURCE))
    assert dict(request.headers) == {"Metadata": "true"}
    assert request.form is None
    assert request.pin_sha1 is None
    assert not request.use_proxies
    assert (request.connect_timeout, request.read_timeout) == (2.0, 10.0)


@pytest.mark.parametrize(
    ("kind", "value", "wire"),
    [
        ("client_id", GUID, "client_id"),
        ("object_id", GUID, "object_id"),
        ("resource_id", RESOURCE_ID, "msi_res_id"),
    ],
)
def test_imds_user_assigned_selector_follows_resource(kind: SelectorKind, value: str, wire: str) -> None:
    request = build(S.IMDS, user(kind, value))
    assert request.params == (("api-version", "2018-02-01"), ("resource", RESOURCE), (wire, value))


def test_timeouts_come_from_parts() -> None:
    request = build(S.IMDS, parts=RequestParts(resource=RESOURCE, connect_timeout=1.0, read_timeout=3.5))
    assert (request.connect_timeout, request.read_timeout) == (1.0, 3.5)


# --- App Service ----------------------------------------------------------------------------------------------


def test_app_service_system_assigned_request() -> None:
    request = build(S.APP_SERVICE)
    assert request.method == "GET"
    assert request.url == APP_SERVICE_URL
    assert request.params == (("api-version", "2019-08-01"), ("resource", RESOURCE))
    assert dict(request.headers) == {"X-IDENTITY-HEADER": SECRET}
    assert request.form is None
    assert not request.use_proxies


@pytest.mark.parametrize(
    ("kind", "value", "wire"),
    [
        ("client_id", GUID, "client_id"),
        ("object_id", GUID, "object_id"),
        ("resource_id", RESOURCE_ID, "mi_res_id"),
    ],
)
def test_app_service_user_assigned_selector(kind: SelectorKind, value: str, wire: str) -> None:
    request = build(S.APP_SERVICE, user(kind, value))
    assert request.params == (("api-version", "2019-08-01"), ("resource", RESOURCE), (wire, value))
    names = [name for name, _ in request.params]
    assert "msi_res_id" not in names
    assert "resource_id" not in names


# --- Azure Arc ------------------------------------------------------------------------------------------------


def test_azure_arc_first_request_has_no_secret() -> None:
    request = build(S.AZURE_ARC)
    assert request.method == "GET"
    assert request.url == ARC_URL
    assert request.params == (("api-version", "2020-06-01"), ("resource", RESOURCE))
    assert dict(request.headers) == {"Metadata": "true"}
    assert "Authorization" not in request.headers
    assert request.form is None


@pytest.mark.parametrize(
    ("kind", "value", "wire"),
    [
        ("client_id", GUID, "client_id"),
        ("object_id", GUID, "object_id"),
        ("resource_id", RESOURCE_ID, "msi_res_id"),
    ],
)
def test_azure_arc_user_assigned_selector(kind: SelectorKind, value: str, wire: str) -> None:
    request = build(S.AZURE_ARC, user(kind, value))
    assert request.params == (("api-version", "2020-06-01"), ("resource", RESOURCE), (wire, value))


# --- Cloud Shell ----------------------------------------------------------------------------------------------


def test_cloud_shell_posts_a_form_without_query() -> None:
    request = build(S.CLOUD_SHELL)
    assert request.method == "POST"
    assert request.url == CLOUD_SHELL_URL
    assert request.params == ()
    assert dict(request.headers) == {"Metadata": "true", "Content-Type": FORM}
    assert dict(request.form or {}) == {"resource": RESOURCE}


def test_cloud_shell_extra_keys_join_the_form_without_overriding_resource() -> None:
    identity = Identity(extra=(("resource", "https://evil"), ("foo", "bar")))
    request = build(S.CLOUD_SHELL, identity)
    assert dict(request.form or {}) == {"resource": RESOURCE, "foo": "bar"}
    assert request.params == ()


# --- Service Fabric -------------------------------------------------------------------------------------------


def test_service_fabric_request_is_pinned_with_secret_header() -> None:
    request = build(S.SERVICE_FABRIC)
    assert request.method == "GET"
    assert request.url == SF_URL
    assert request.params == (("api-version", "2020-05-01"), ("resource", RESOURCE))
    assert dict(request.headers) == {"Secret": SECRET}
    assert request.pin_sha1 == PIN
    assert request.form is None
    assert not request.use_proxies


def test_service_fabric_sends_xms_cc_when_capabilities_are_set() -> None:
    parts = RequestParts(
        resource=RESOURCE, connect_timeout=2.0, read_timeout=10.0, capabilities=("cp1", "cp2")
    )
    request = build(S.SERVICE_FABRIC, parts=parts)
    assert request.params == (
        ("api-version", "2020-05-01"),
        ("resource", RESOURCE),
        ("xms_cc", "cp1,cp2"),
    )


def test_service_fabric_sends_token_sha256_to_refresh_for_revocation() -> None:
    digest = "a" * 64
    parts = RequestParts(
        resource=RESOURCE,
        connect_timeout=2.0,
        read_timeout=10.0,
        capabilities=("cp1",),
        token_sha256_to_refresh=digest,
        claims='{"access_token":{"nbf":{"essential":true}}}',
    )
    request = build(S.SERVICE_FABRIC, parts=parts)
    assert request.params == (
        ("api-version", "2020-05-01"),
        ("resource", RESOURCE),
        ("xms_cc", "cp1"),
        ("token_sha256_to_refresh", digest),
    )
    assert "claims" not in dict(request.params)


# --- Machine Learning -----------------------------------------------------------------------------------------


def test_machine_learning_system_assigned_request() -> None:
    request = build(S.MACHINE_LEARNING)
    assert request.method == "GET"
    assert request.url == ML_URL
    assert request.params == (("api-version", "2017-09-01"), ("resource", RESOURCE))
    assert dict(request.headers) == {"secret": SECRET, "Metadata": "true"}
    assert request.form is None


def test_machine_learning_system_assigned_sends_default_identity_client_id() -> None:
    request = build(S.MACHINE_LEARNING, default_client_id="ml-default")
    assert request.params == (
        ("api-version", "2017-09-01"),
        ("resource", RESOURCE),
        ("clientid", "ml-default"),
    )


def test_machine_learning_user_assigned_client_id_is_clientid() -> None:
    request = build(S.MACHINE_LEARNING, user("client_id"), default_client_id="ml-default")
    assert request.params == (("api-version", "2017-09-01"), ("resource", RESOURCE), ("clientid", GUID))


# --- workload identity ----------------------------------------------------------------------------------------


def wi_parts(**fields: Any) -> RequestParts:
    return RequestParts(
        resource=RESOURCE, connect_timeout=2.0, read_timeout=10.0, client_assertion=ASSERTION, **fields
    )


def test_workload_identity_posts_the_client_assertion_form() -> None:
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts())
    assert request.method == "POST"
    assert request.url == WI_URL
    assert request.params == ()
    assert dict(request.headers) == {"Content-Type": FORM}
    assert dict(request.form or {}) == {
        "client_assertion": ASSERTION,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_id": "env-client",
        "grant_type": "client_credentials",
        "scope": RESOURCE + "/.default",
    }
    assert request.use_proxies
    assert request.pin_sha1 is None


def test_workload_identity_client_id_argument_beats_azure_client_id() -> None:
    request = build(S.WORKLOAD_IDENTITY, user("client_id", "arg-client"), parts=wi_parts())
    assert (request.form or {})["client_id"] == "arg-client"


def test_workload_identity_passes_claims_alone() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}}}'
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts(claims=claims))
    assert (request.form or {})["claims"] == claims


def test_workload_identity_capabilities_become_claims() -> None:
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts(capabilities=("cp1",)))
    assert json.loads((request.form or {})["claims"]) == {"access_token": {"xms_cc": {"values": ["cp1"]}}}


def test_workload_identity_merges_claims_with_xms_cc() -> None:
    claims = '{"access_token":{"nbf":{"essential":true,"value":"1"}},"id_token":{"x":1}}'
    request = build(S.WORKLOAD_IDENTITY, parts=wi_parts(claims=claims, capabilities=("cp1", "cp2")))
    assert json.loads((request.form or {})["claims"]) == {
        "access_token": {"nbf": {"essential": True, "value": "1"}, "xms_cc": {"values": ["cp1", "cp2"]}},
        "id_token": {"x": 1},
    }


def test_workload_identity_without_claims_or_capabilities_sends_no_claims() -> None:
    assert "claims" not in (build(S.WORKLOAD_IDENTITY, parts=wi_parts(claims="")).form or {})


# --- capabilities and claims elsewhere ------------------------------------------------------------------------


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


# --- extra identity_config keys -------------------------------------------------------------------------------


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


# --- secrets stay out of repr ---------------------------------------------------------------------------------


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


def test_request_repr_hides_authorization_added_later() -> None:
    request = Request("GET", ARC_URL, headers={"Metadata": "true", "Authorization": "Basic c2VjcmV0LWtleQ"})
    assert "c2VjcmV0LWtleQ" not in repr(request)


# --- modules agree with the table -----------------------------------------------------------------------------


def test_modules_declare_the_protocol_api_versions() -> None:
    assert imds.API_VERSION == "2018-02-01"
    assert app_service.API_VERSION == "2019-08-01"
    assert azure_arc.API_VERSION == "2020-06-01"
    assert service_fabric.API_VERSION == "2020-05-01"
    assert machine_learning.API_VERSION == "2017-09-01"
    assert workload_identity.ASSERTION_TYPE == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    assert cloud_shell.SPEC.selectors == {}
