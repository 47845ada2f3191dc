"""Speaking to an emulator with http.client, as the tests of tests/emulator/ do: one request on a fresh connection,
the request each source accepts, the workload identity form, and the constants these requests carry."""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

from msi_credential.emulator import Emulator, UserAssignedIdentity

RESOURCE = "https://storage.azure.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
IDENTITY = UserAssignedIdentity(
    client_id="11111111-aaaa-1111-1111-111111111111",
    object_id="22222222-bbbb-2222-2222-222222222222",
    resource_id="/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/u",
)
API_VERSIONS = {
    "imds": "2018-02-01",
    "app_service": "2019-08-01",
    "azure_arc": "2020-06-01",
    "service_fabric": "2020-05-01",
    "machine_learning": "2017-09-01",
}
# Older api-versions an endpoint still takes: Service Fabric's preview, which azure-identity and msal-python send.
OLDER_API_VERSIONS = {"service_fabric": ("2019-07-01-preview",)}
# The variables each source's emulator sets (Emulator.environ).
EXPECTED_ENVIRON = {
    "imds": {"AZURE_POD_IDENTITY_AUTHORITY_HOST"},
    "app_service": {"IDENTITY_ENDPOINT", "IDENTITY_HEADER"},
    "azure_arc": {"IDENTITY_ENDPOINT", "IMDS_ENDPOINT"},
    "cloud_shell": {"MSI_ENDPOINT"},
    "service_fabric": {"IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT"},
    "machine_learning": {"MSI_ENDPOINT", "MSI_SECRET"},
}


class Answer:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {name.lower(): value for name, value in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    emulator: Emulator,
    method: str = "GET",
    *,
    path: Optional[str] = None,
    query: Optional[Mapping[str, str]] = None,
    headers: Optional[Mapping[str, str]] = None,
    body: Optional[bytes] = None,
) -> Answer:
    """One request on a fresh connection; HTTPS without certificate checks."""
    parts = urlsplit(emulator.url)
    target = (path or parts.path) + ("?" + urlencode(query) if query else "")
    host, port = parts.hostname or "", parts.port or 0
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, port, timeout=5, context=insecure_context())
    else:
        connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


def insecure_context() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def token_request(emulator: Emulator, **params: str) -> Answer:
    """A request the emulator's source accepts, plus ``params``."""
    source = emulator.source.value
    if source == "cloud_shell":
        form = urlencode({"resource": RESOURCE, **params}).encode()
        headers = {"Metadata": "true", "Content-Type": "application/x-www-form-urlencoded"}
        return call(emulator, "POST", headers=headers, body=form)
    query = {"api-version": API_VERSIONS[source], "resource": RESOURCE, **params}
    secret = emulator.secret
    headers = {
        "imds": {"Metadata": "true"},
        "azure_arc": {"Metadata": "true"},
        "app_service": {"X-IDENTITY-HEADER": secret},
        "service_fabric": {"Secret": secret},
        "machine_learning": {"secret": secret, "Metadata": "true"},
    }[source]
    answer = call(emulator, query=query, headers=headers)
    if source == "azure_arc" and answer.status == 401:
        key = Path(realm(answer)).read_text()
        answer = call(emulator, query=query, headers={**headers, "Authorization": f"Basic {key}"})
    return answer


def realm(answer: Answer) -> str:
    challenge = answer.headers["www-authenticate"]
    assert challenge.startswith("Basic realm=")
    return challenge[len("Basic realm=") :]


def arc_keys(emulator: Emulator) -> list[str]:
    directory = emulator.key_directory
    assert directory is not None
    return sorted(name for name in os.listdir(directory) if name.endswith(".key"))


def peer_certificate(emulator: Emulator) -> bytes:
    parts = urlsplit(emulator.url)
    address = (parts.hostname or "", parts.port or 0)
    with socket.create_connection(address, timeout=5) as raw, insecure_context().wrap_socket(raw) as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def verified_context(cafile: str) -> ssl.SSLContext:
    """A client context that checks the certificate chain and the host name, trusting only ``cafile``."""
    context = ssl.create_default_context(cafile=cafile)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    return context


def verified_call(
    emulator: Emulator,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    *,
    context: Optional[ssl.SSLContext] = None,
    method: str = "GET",
    body: Optional[bytes] = None,
) -> tuple[int, Any]:
    """One request, over https with the certificate checked against the run's CA; (status, parsed JSON body)."""
    parts = urlsplit(emulator.url)
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            parts.hostname or "",
            parts.port,
            timeout=5,
            context=context or verified_context(str(emulator.ca_file)),
        )
    else:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request(method, path + "?" + urlencode(query), body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


# ---------------------------------------------------------------------------------------------- workload identity

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded"}


def wi_form(emulator: Emulator, **changes: Optional[str]) -> dict[str, str]:
    """A client credentials form the workload identity emulator accepts, with ``changes`` (None drops a field)."""
    form: dict[str, Optional[str]] = {
        "client_assertion": emulator.assertion,
        "client_assertion_type": ASSERTION_TYPE,
        "client_id": emulator.system_identity.client_id,
        "grant_type": "client_credentials",
        "scope": RESOURCE + "/.default",
    }
    form.update(changes)
    return {name: value for name, value in form.items() if value is not None}


def wi_request(
    emulator: Emulator,
    form: Optional[Mapping[str, str]] = None,
    *,
    method: str = "POST",
    path: Optional[str] = None,
    headers: Optional[Mapping[str, str]] = None,
) -> Answer:
    body = urlencode(dict(form if form is not None else wi_form(emulator))).encode()
    return call(emulator, method, path=path, headers=headers or FORM_HEADERS, body=body)


def assert_entra_error(answer: Answer, status: int, error: str, number: Optional[int]) -> None:
    assert answer.status == status, answer.body
    body = answer.json()
    assert body["error"] == error
    assert body["error_codes"] == ([number] if number is not None else [])
    if number is not None:
        assert body["error_description"].startswith(f"AADSTS{number}: ")
    for name in ("trace_id", "correlation_id"):
        assert len(body[name]) == 36 and body[name].count("-") == 4
    assert f"Correlation ID: {body['correlation_id']}" in body["error_description"]
    assert body["timestamp"].endswith("Z")
