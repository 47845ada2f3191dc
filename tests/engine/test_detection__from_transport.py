"""Hand-off from tests/transport (the lead folds it into this folder's test_detection.py): endpoints and
secrets from the environment that detection refuses before any socket opens (invalid_endpoint,
invalid_secret), without quoting the secret. Both faces (the ``face`` fixture); a loopback server shows that
nothing was sent."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError

from ..transport import support
from ..transport.support import (
    SCOPE,
    assert_secret_absent,
    http_answer,
    token_body,
)

capturing_server = support.capturing_server  # the fixture


def _refusal(face: Any, environ: dict[str, str], error_code: str) -> ManagedIdentityError:
    """The error a credential of ``environ`` raises at its first call, which must be ``error_code``."""
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == error_code
    return caught.value


# -------------------------------------------------------------------------------------------------- endpoints


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        (
            {"IDENTITY_ENDPOINT": "http://10.1.2.3/msi/token", "IDENTITY_HEADER": "h-secret"},
            "IDENTITY_ENDPOINT",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1@evil.example/", "IDENTITY_HEADER": "h-secret"},
            "IDENTITY_ENDPOINT",
        ),
        ({"MSI_ENDPOINT": "http://169.254.169.254.evil.example/", "MSI_SECRET": "m-secret"}, "MSI_ENDPOINT"),
        ({"MSI_ENDPOINT": "http://2130706433/"}, "MSI_ENDPOINT"),
        (
            {"IDENTITY_ENDPOINT": "http://0.0.0.0:40342/", "IMDS_ENDPOINT": "http://0.0.0.0"},
            "IDENTITY_ENDPOINT",
        ),
        (
            {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://192.168.0.10:8080"},
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
        ),
        ({"IDENTITY_ENDPOINT": "https://[fe80::1]/", "IDENTITY_HEADER": "h-secret"}, "IDENTITY_ENDPOINT"),
    ],
)
def test_unsafe_endpoints_are_refused_before_any_socket(
    face: Any, environ: dict[str, str], variable: str, socket_guard: list[str]
) -> None:
    refused = _refusal(face, environ, "invalid_endpoint")
    assert variable in str(refused)
    for secret in ("h-secret", "m-secret"):
        assert secret not in str(refused)
    assert socket_guard == []


@pytest.mark.parametrize("bad", ["\t", " ", "\x00", "\u00e9", "#frag", "\x7f"])
@pytest.mark.parametrize(
    "variable", ["IDENTITY_ENDPOINT", "MSI_ENDPOINT", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IMDS_ENDPOINT"]
)
def test_whitespace_or_control_characters_in_an_endpoint_are_invalid_endpoint_before_any_socket(
    face: Any,
    capturing_server: Any,
    variable: str,
    bad: str,
) -> None:
    server = capturing_server(lambda head: http_answer(token_body()))
    good = f"http://127.0.0.1:{server.port}"
    environ = {
        "IDENTITY_ENDPOINT": {"IDENTITY_ENDPOINT": good + f"/m{bad}si", "IDENTITY_HEADER": "header-secret"},
        "MSI_ENDPOINT": {"MSI_ENDPOINT": good + f"/m{bad}si"},
        "AZURE_POD_IDENTITY_AUTHORITY_HOST": {"AZURE_POD_IDENTITY_AUTHORITY_HOST": good + f"/{bad}x"},
        "IMDS_ENDPOINT": {"IDENTITY_ENDPOINT": good + "/metadata", "IMDS_ENDPOINT": good + f"/{bad}x"},
    }[variable]
    refused = _refusal(face, environ, "invalid_endpoint")
    assert variable in str(refused)
    assert server.raw == []


# ---------------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MSI_ENDPOINT": "http://127.0.0.1:9/MSI/auth", "MSI_SECRET": "TOP\nSECRET"}, "MSI_SECRET"),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token", "IDENTITY_HEADER": "TOP\r\nSECRET"},
            "IDENTITY_HEADER",
        ),
    ],
)
def test_secret_with_control_characters_is_refused_before_any_socket(
    face: Any, environ: dict[str, str], variable: str, socket_guard: list[str]
) -> None:
    refused = _refusal(face, environ, "invalid_secret")
    assert variable in str(refused) and "SECRET\n" not in str(refused) and "TOP" not in str(refused)


@pytest.mark.parametrize(
    ("variables", "secret"),
    [
        ({"IDENTITY_HEADER": "s\u0113cret-\u2603-value"}, "s\u0113cret-\u2603-value"),
        ({"IDENTITY_HEADER": "s\u00e9cret-latin-1"}, "s\u00e9cret-latin-1"),
        ({"MSI_SECRET": "ml-s\u0113cret-\u2603"}, "ml-s\u0113cret-\u2603"),
    ],
    ids=["identity-header", "identity-header-latin-1", "msi-secret"],
)
def test_a_non_ascii_secret_is_a_typed_error_before_any_socket(
    face: Any,
    capturing_server: Any,
    variables: dict[str, str],
    secret: str,
) -> None:
    server = capturing_server(lambda head: http_answer(token_body()))
    base = f"http://127.0.0.1:{server.port}/msi/token"
    environ = (
        {"IDENTITY_ENDPOINT": base, **variables}
        if "IDENTITY_HEADER" in variables
        else {"MSI_ENDPOINT": base, **variables}
    )
    refused = _refusal(face, environ, "invalid_secret")
    assert server.raw == []
    assert_secret_absent(refused, secret)
