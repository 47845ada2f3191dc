"""The emulator as a local stand-in for any Azure SDK: per-run TLS, paths as the services take them, Arc's key
directory, and workload identity over https."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import stat
import uuid
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode, urlsplit

import pytest

import msi_credential
from msi_credential.emulator import Emulator, EmulatorSetupError

RESOURCE = "https://storage.azure.com"


def verified_context(cafile: str) -> ssl.SSLContext:
    """A client context that checks the certificate chain and the host name, trusting only ``cafile``."""
    context = ssl.create_default_context(cafile=cafile)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    return context


def get(
    emulator: Emulator,
    path: str,
    query: dict[str, str],
    headers: dict[str, str],
    *,
    context: Optional[ssl.SSLContext] = None,
    method: str = "GET",
    body: Optional[bytes] = None,
) -> tuple[int, Any]:
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


# ---------------------------------------------------------------------------------------------- per-run TLS


def test_the_package_ships_no_private_key_and_no_certificate() -> None:
    package = Path(msi_credential.__file__).parent
    shipped = [path for path in package.rglob("*") if path.suffix in (".pem", ".key", ".crt")]
    assert shipped == []
    for path in package.rglob("*.py"):
        assert "PRIVATE KEY-----" not in path.read_text(encoding="utf-8"), path


def test_service_fabric_certificate_verifies_against_this_runs_ca_only() -> None:
    with Emulator("service_fabric") as first, Emulator("service_fabric") as second:
        assert first.ca_file is not None and second.ca_file is not None
        status, body = get(
            first,
            urlsplit(first.url).path,
            {"api-version": "2019-07-01-preview", "resource": RESOURCE},
            {"Secret": first.secret},
        )
        assert status == 200 and body["resource"] == RESOURCE
        # The other run's CA does not vouch for this run's server: each run has its own.
        with pytest.raises(ssl.SSLCertVerificationError):
            get(first, "/", {}, {}, context=verified_context(second.ca_file))
        files = [first.ca_file, str(first.ca_bundle_file)]
    assert not any(os.path.exists(path) for path in files)  # removed at stop


def test_thumbprint_is_the_sha1_of_the_served_leaf_and_the_ca_is_separate() -> None:
    with Emulator("service_fabric") as emulator:
        parts = urlsplit(emulator.url)
        context = verified_context(str(emulator.ca_file))
        connection = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=5, context=context)
        connection.connect()
        assert connection.sock is not None
        der = connection.sock.getpeercert(binary_form=True)
        leaf = connection.sock.getpeercert()
        connection.close()
        assert der is not None
        assert hashlib.sha1(der).hexdigest() == emulator.environ["IDENTITY_SERVER_THUMBPRINT"]
        ca_der = ssl.PEM_cert_to_DER_cert(Path(str(emulator.ca_file)).read_text(encoding="ascii"))
        assert hashlib.sha1(ca_der).hexdigest() != emulator.thumbprint  # the pin names the leaf, not the CA
        names = {value for kind, value in leaf.get("subjectAltName", ()) if kind in ("DNS", "IP Address")}
        assert {"127.0.0.1", "localhost"} <= names


def test_trust_variables_name_the_ca_and_a_bundle_that_keeps_the_public_roots() -> None:
    with Emulator("service_fabric") as emulator:
        trust = emulator.trust_environ
        assert trust["NODE_EXTRA_CA_CERTS"] == emulator.ca_file
        assert trust["REQUESTS_CA_BUNDLE"] == trust["SSL_CERT_FILE"] == emulator.ca_bundle_file
        ca = Path(trust["NODE_EXTRA_CA_CERTS"]).read_text(encoding="ascii")
        bundle = Path(trust["SSL_CERT_FILE"]).read_text(encoding="ascii")
        assert ca.count("BEGIN CERTIFICATE") == 1
        assert ca.strip() in bundle
        assert bundle.count("BEGIN CERTIFICATE") > 1  # the public roots are still there
        key_files = list(Path(trust["NODE_EXTRA_CA_CERTS"]).parent.glob("*key*"))
        assert [stat.S_IMODE(path.stat().st_mode) for path in key_files] == [0o600]
    assert Emulator("imds").trust_environ == {}


def test_service_fabric_cannot_be_served_over_plain_http() -> None:
    with pytest.raises(ValueError, match="https only"):
        Emulator("service_fabric", tls=False)


# ---------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("source", "path", "headers"),
    [
        ("imds", "/metadata/identity/oauth2/token/", {"Metadata": "true"}),
        ("imds", "/METADATA/Identity/OAuth2/Token", {"Metadata": "true"}),
        ("app_service", "/msi/token/", None),
        ("app_service", "/MSI/TOKEN", None),
        ("machine_learning", "/msi/auth/", None),
        ("service_fabric", "/metadata/identity/oauth2/token/", None),
    ],
)
def test_token_paths_in_any_case_and_with_a_trailing_slash(
    source: str, path: str, headers: Optional[dict[str, str]]
) -> None:
    api = {
        "imds": "2018-02-01",
        "app_service": "2019-08-01",
        "machine_learning": "2017-09-01",
        "service_fabric": "2020-05-01",
    }[source]
    with Emulator(source) as emulator:
        secret = {
            "imds": {},
            "app_service": {"X-IDENTITY-HEADER": emulator.secret},
            "machine_learning": {"secret": emulator.secret},
            "service_fabric": {"Secret": emulator.secret},
        }[source]
        status, body = get(
            emulator, path, {"api-version": api, "resource": RESOURCE}, {**(headers or {}), **secret}
        )
        assert status == 200, body
        assert body["access_token"].count(".") == 2


@pytest.mark.parametrize(
    "path",
    ["/metadata/identity/oauth2/token//", "/metadata/identity/oauth2", "/metadata/identity/oauth2/tokens"],
)
def test_other_paths_get_the_services_not_found(path: str) -> None:
    with Emulator("imds") as emulator:
        status, body = get(
            emulator, path, {"api-version": "2018-02-01", "resource": RESOURCE}, {"Metadata": "true"}
        )
    assert status == 404
    assert body["error"] == "not_found"


# ---------------------------------------------------------------------------------------------- workload identity


def test_workload_identity_over_https_with_discovery_and_case_insensitive_paths() -> None:
    with Emulator("workload_identity", tls=True) as emulator:
        environ = emulator.environ
        assert environ["AZURE_AUTHORITY_HOST"].startswith("https://127.0.0.1:")
        tenant = emulator.tenant_id
        status, document = get(emulator, f"/{tenant}/v2.0/.well-known/openid-configuration", {}, {})
        assert status == 200
        assert document["token_endpoint"] == f"{environ['AZURE_AUTHORITY_HOST']}/{tenant}/oauth2/v2.0/token"
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": environ["AZURE_CLIENT_ID"],
                "scope": RESOURCE + "/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": emulator.assertion,
            }
        ).encode()
        status, body = get(
            emulator,
            f"/{tenant.upper()}/OAuth2/v2.0/Token/",
            {},
            {"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
            body=form,
        )
        assert status == 200, body
        assert body["token_type"] == "Bearer"
        assert emulator.requests[-1].scheme == "https"


# ---------------------------------------------------------------------------------------------- Azure Arc directory


def test_arc_creates_a_missing_key_directory_like_the_agent_and_removes_only_what_it_made(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "var" / "opt" / "azcmagent" / "tokens"
    with Emulator("azure_arc", arc_key_directory=str(directory)) as emulator:
        assert emulator.key_directory == str(directory)
        assert stat.S_IMODE(directory.stat().st_mode) == 0o770
        status, _ = get(
            emulator,
            "/metadata/identity/oauth2/token",
            {"api-version": "2020-06-01", "resource": RESOURCE},
            {"Metadata": "true"},
        )
        assert status == 401
        [key_file] = list(directory.glob("*.key"))
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o640
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # every directory it made is gone


def test_arc_keeps_an_existing_key_directory_and_what_others_put_there(tmp_path: Path) -> None:
    foreign = tmp_path / f"{uuid.uuid4()}.key"
    foreign.write_text("someone else's")
    with Emulator("azure_arc", arc_key_directory=str(tmp_path)) as emulator:
        get(
            emulator,
            "/metadata/identity/oauth2/token",
            {"api-version": "2020-06-01", "resource": RESOURCE},
            {"Metadata": "true"},
        )
        assert len(list(tmp_path.glob("*.key"))) == 2
    assert [path.name for path in tmp_path.iterdir()] == [foreign.name]


def test_arc_key_directory_it_may_not_write_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    directory = blocker / "tokens"
    emulator = Emulator("azure_arc", arc_key_directory=str(directory))

    with pytest.raises(EmulatorSetupError) as raised:
        emulator.start()

    message = str(raised.value)
    assert f"cannot write Azure Arc key files in {directory}" in message
    assert "run the emulator with the rights to write there" in message
    assert "(Not a directory)" in message
    assert "_arc_key_directory" not in message.replace(str(directory), "")  # no private keyword as the way in
