"""msi_credential/emulator/_tls.py: TLS made for each run (its own CA, the leaf the thumbprint pins, the trust
variables and bundle), no key or certificate shipped, and the emulator extra it needs."""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import stat
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

import msi_credential
from msi_credential.emulator import Emulator, EmulatorSetupError

from .http_calls import RESOURCE, peer_certificate, token_request, verified_call, verified_context


def test_the_package_ships_no_private_key_and_no_certificate() -> None:
    package = Path(msi_credential.__file__).parent
    shipped = [path for path in package.rglob("*") if path.suffix in (".pem", ".key", ".crt")]
    assert shipped == []
    for path in package.rglob("*.py"):
        assert "PRIVATE KEY-----" not in path.read_text(encoding="utf-8"), path


def test_service_fabric_certificate_verifies_against_this_runs_ca_only() -> None:
    with Emulator("service_fabric") as first, Emulator("service_fabric") as second:
        assert first.ca_file is not None and second.ca_file is not None
        status, body = verified_call(
            first,
            urlsplit(first.url).path,
            {"api-version": "2019-07-01-preview", "resource": RESOURCE},
            {"Secret": first.secret},
        )
        assert status == 200 and body["resource"] == RESOURCE
        # The other run's CA does not vouch for this run's server: each run has its own.
        with pytest.raises(ssl.SSLCertVerificationError):
            verified_call(first, "/", {}, {}, context=verified_context(second.ca_file))
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


def test_service_fabric_makes_its_own_certificate(emulator_factory: Any) -> None:
    emulator = emulator_factory("service_fabric")

    der = peer_certificate(emulator)

    assert hashlib.sha1(der).hexdigest() == emulator.thumbprint
    assert token_request(emulator).status == 200


def test_service_fabric_without_the_emulator_extra_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "trustme", None)
    emulator = Emulator("service_fabric")

    with pytest.raises(EmulatorSetupError, match=r"pip install 'msi-credential\[emulator\]'"):
        emulator.start()

    assert emulator.ca_file is None
    assert "not started" in repr(emulator)
