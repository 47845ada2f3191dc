"""The engine's messages, log lines and last edge rules, word for word (issue 13, mutation testing).

An error's message and a log line are what a person reads to fix a deployment (docs/troubleshooting.md sends
them there: "the message names the variable"), so they are checked whole here, together with the fields the contract gives (`error_code`, `status_code`,
`source`). The edge rules are those the last mutation run of docs/mutation.md still found unchecked. All
socket-free: the engine's functions, or its flows through the scripted driver of tests/engine/scripted.py.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine import cache
from msi_credential._engine.detection import SourceConfig, detect
from msi_credential._engine.effects import MAX_BODY_BYTES, Response, TransportFailure
from msi_credential._engine.identity import Identity
from msi_credential._engine.response import error_from_response, parse_token
from msi_credential._engine.scopes import resource_from_scopes
from msi_credential._engine.sources import azure_arc, workload_identity
from msi_credential._engine.sources.azure_arc import key_file_named, valid_key_path

from .engine.scripted import APP_SERVICE, IMDS, Clock, Script, engine, error_response, token_response

RESOURCE = "https://vault.azure.net"
WORKLOAD = ManagedIdentitySource.WORKLOAD_IDENTITY


def _detect(environ: dict[str, str], **kwargs: Any) -> SourceConfig:
    return detect(environ, platform="linux", path_exists=lambda path: False, **kwargs)


def _workload(**changes: str) -> dict[str, str]:
    return {
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
        "AZURE_TENANT_ID": "tenant-1",
        "AZURE_CLIENT_ID": "client-1",
        "AZURE_AUTHORITY_HOST": "https://login.example.test",
        **changes,
    }


def _raised(call: Any) -> ManagedIdentityError:
    with pytest.raises(ManagedIdentityError) as caught:
        call()
    return caught.value


def _fields(error: ManagedIdentityError) -> tuple[Any, ...]:
    return (
        isinstance(error, CredentialUnavailableError),
        error.error_code,
        error.status_code,
        error.source,
        str(error),
    )


# ----------------------------------------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        (
            _workload(AZURE_AUTHORITY_HOST="ftp://login.example.test"),
            (
                "invalid_endpoint",
                "AZURE_AUTHORITY_HOST must be an https:// URL (or http:// to a loopback host)",
            ),
        ),
        (
            _workload(AZURE_TENANT_ID="tenant one"),
            (
                "invalid_tenant_id",
                "AZURE_TENANT_ID is not a valid tenant id (letters, digits, '.' and '-' only)",
            ),
        ),
        (
            {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://10.0.0.1"},
            (
                "invalid_endpoint",
                "AZURE_POD_IDENTITY_AUTHORITY_HOST must be an http(s) URL to a loopback or link-local host",
            ),
        ),
        (
            {
                "IDENTITY_ENDPOINT": "https://127.0.0.1:2377/metadata/identity/oauth2/token",
                "IDENTITY_HEADER": "header-secret",
                "IDENTITY_SERVER_THUMBPRINT": "not-a-thumbprint",
            },
            (
                "invalid_thumbprint",
                "IDENTITY_SERVER_THUMBPRINT must be a SHA-1 thumbprint of 40 hexadecimal digits",
            ),
        ),
        (
            {**APP_SERVICE, "IDENTITY_HEADER": "header\x01secret"},
            ("invalid_secret", "IDENTITY_HEADER contains control or non-ASCII characters"),
        ),
        (
            {**APP_SERVICE, "IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token?x=\x7f"},
            (
                "invalid_endpoint",
                "IDENTITY_ENDPOINT contains whitespace, control or non-ASCII characters, or a '#' fragment",
            ),
        ),
    ],
    ids=["authority", "tenant", "pod-host", "thumbprint", "secret", "endpoint-characters"],
)
def test_a_refused_configuration_names_its_variable_in_these_words(
    environ: dict[str, str], problem: tuple[str, str]
) -> None:
    assert _detect(environ).problem == problem


@pytest.mark.parametrize("enable_azure_proxy", [False, True])
def test_a_non_ascii_authority_is_refused_with_or_without_the_token_proxy_opt_in(
    enable_azure_proxy: bool,
) -> None:
    # the authority rules alone let a non-ASCII host through; the characters check after them must run in both
    # cases (with the opt-in and no identity binding, detection goes on with the authority)
    config = _detect(
        _workload(AZURE_AUTHORITY_HOST="https://login.ex\u00e4mple.test"),
        enable_azure_proxy=enable_azure_proxy,
    )

    assert config.problem == (
        "invalid_endpoint",
        "AZURE_AUTHORITY_HOST contains whitespace, control or non-ASCII characters, or a '#' fragment",
    )


def test_an_authority_ending_in_x_keeps_its_last_letter_and_loses_only_its_slash() -> None:
    config = _detect(_workload(AZURE_AUTHORITY_HOST="https://login.example.testX/"))

    assert config.problem is None
    assert config.endpoint == "https://login.example.testX/tenant-1/oauth2/v2.0/token"


@pytest.mark.parametrize("tenant", ["X", "XX", "x.X"])
def test_a_tenant_of_letters_x_is_a_tenant(tenant: str) -> None:
    config = _detect(_workload(AZURE_TENANT_ID=tenant))

    assert config.problem is None and config.tenant_id == tenant
    assert config.endpoint == f"https://login.example.test/{tenant}/oauth2/v2.0/token"


def test_identity_endpoint_alone_logs_that_it_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        config = _detect({"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token"})

    assert config.source is ManagedIdentitySource.IMDS
    assert [record.getMessage() for record in caplog.records] == [
        "IDENTITY_ENDPOINT is set without IDENTITY_HEADER or IMDS_ENDPOINT; ignoring it"
    ]


# ------------------------------------------------------------------------------------------- token answers


def _parse(source: ManagedIdentitySource, status: int, body: bytes) -> ManagedIdentityError:
    return _raised(lambda: parse_token(Response(status, {}, body), source=source, start=0.0))


def test_a_body_over_the_limit_is_refused_in_these_words() -> None:
    error = _parse(ManagedIdentitySource.APP_SERVICE, 200, b" " * (MAX_BODY_BYTES + 1))

    assert _fields(error) == (
        False,
        "response_too_large",
        200,
        ManagedIdentitySource.APP_SERVICE,
        f"App Service managed identity endpoint answered with a body over {MAX_BODY_BYTES} bytes",
    )


def test_imds_answering_200_with_html_is_not_imds_in_these_words() -> None:
    error = _parse(ManagedIdentitySource.IMDS, 200, b"<html>a captive portal</html>")

    assert _fields(error) == (
        True,
        "imds_unreachable",
        200,
        ManagedIdentitySource.IMDS,
        "IMDS answered 200 with a body that is not JSON: this is not IMDS, managed identity is not available here",
    )


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (
            b'{"access_token": "a b", "expires_in": 3600}',
            "the access_token holds characters an HTTP header cannot carry",
        ),
        (
            b'{"access_token": "t", "expires_in": 3600, "token_type": "Be arer"}',
            "the token_type is not a printable ASCII word",
        ),
    ],
    ids=["access-token", "token-type"],
)
def test_a_token_a_header_cannot_carry_is_refused_with_its_source_and_status(body: bytes, why: str) -> None:
    error = _parse(ManagedIdentitySource.CLOUD_SHELL, 203, body)

    assert _fields(error) == (
        False,
        "invalid_response",
        203,
        ManagedIdentitySource.CLOUD_SHELL,
        f"Cloud Shell managed identity endpoint answered 203 without a usable token: {why}",
    )


def test_an_imds_error_that_is_not_json_says_managed_identity_is_not_available() -> None:
    error = error_from_response(Response(502, {}, b"Bad Gateway"), source=ManagedIdentitySource.IMDS)

    assert _fields(error) == (
        True,
        "imds_unreachable",
        502,
        ManagedIdentitySource.IMDS,
        "IMDS did not answer like IMDS (the body is not JSON); managed identity is not available here (HTTP 502)",
    )


def test_imds_400_for_an_unknown_identity_says_so() -> None:
    body = b'{"error": "invalid_request", "error_description": "Identity not found"}'
    error = error_from_response(Response(400, {}, body), source=ManagedIdentitySource.IMDS)

    assert _fields(error) == (
        True,
        "identity_not_found",
        400,
        ManagedIdentitySource.IMDS,
        "IMDS has no such identity assigned (identity not found) (HTTP 400, invalid_request): Identity not found",
    )


# --------------------------------------------------------------------------------- arguments and identities


@pytest.mark.parametrize("scope", ["", " ", "https://vault.azure.net/.default\n"])
def test_an_unusable_scope_is_refused_in_these_words(scope: str) -> None:
    with pytest.raises(ValueError) as caught:
        resource_from_scopes((scope,))

    assert str(caught.value) == (
        "a scope must be a non-empty resource or '<resource>/.default' without whitespace or control characters"
    )


def test_workload_identity_without_a_client_id_says_how_to_give_one() -> None:
    config = _detect(_workload())

    assert workload_identity.check(config, Identity("client_id", None)) == (
        "missing_client_id",
        "workload identity needs a client id: pass client_id= or set AZURE_CLIENT_ID",
    )


# -------------------------------------------------------------------------------------------------- Azure Arc


def test_arc_not_confirming_the_identity_says_the_token_was_discarded() -> None:
    identity = Identity("client_id", "11111111-2222-3333-4444-555555555555")

    error = _raised(lambda: azure_arc.confirm(identity, {"client_id": "another"}))

    assert _fields(error) == (
        False,
        "arc_identity_not_confirmed",
        200,
        ManagedIdentitySource.AZURE_ARC,
        "Azure Arc managed identity endpoint did not confirm the requested identity with client_id; the token was "
        "discarded (the agent may not support user-assigned identities)",
    )


def _arc_config(directory: str, platform: str = "linux") -> SourceConfig:
    return SourceConfig(
        ManagedIdentitySource.AZURE_ARC, "http://127.0.0.1:9", platform=platform, arc_key_directory=directory
    )


def test_arc_on_another_platform_names_the_platform() -> None:
    error = _raised(lambda: key_file_named(_arc_config("/keys", "darwin"), "Basic realm=/keys/a.key"))

    assert _fields(error) == (
        False,
        "arc_platform_unsupported",
        401,
        ManagedIdentitySource.AZURE_ARC,
        "Azure Arc managed identity endpoint: Azure Arc managed identity is supported on Linux and Windows, "
        "not darwin",
    )


def test_arc_key_file_outside_the_directory_names_the_directory() -> None:
    error = _raised(lambda: key_file_named(_arc_config("/keys"), "Basic realm=/elsewhere/a.key"))

    assert _fields(error) == (
        False,
        "arc_invalid_key_file",
        401,
        ManagedIdentitySource.AZURE_ARC,
        "Azure Arc managed identity endpoint: the challenge names a key file outside /keys or without the .key "
        "extension",
    )


def test_arc_key_file_on_drive_x_keeps_its_drive_letter() -> None:
    config = _arc_config("X:\\ProgramData\\AzureConnectedMachineAgent\\Tokens", "windows")
    header = 'Basic realm="X:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.key"'

    assert key_file_named(config, header) == "X:\\ProgramData\\AzureConnectedMachineAgent\\Tokens\\a.key"


@pytest.mark.parametrize(
    ("path", "directory", "windows"),
    [
        ("/var/tokensX/a.key", "/var/tokensX", False),
        ("/var/tokensX/a.key", "/var/tokensX/", False),
        ("C:\\TokensX\\a.key", "C:\\TokensX", True),
        ("C:\\TokensX\\a.key", "C:\\TokensX\\", True),
    ],
)
def test_arc_key_directory_ending_in_x_is_that_directory(path: str, directory: str, windows: bool) -> None:
    assert valid_key_path(path, directory, windows) is True


@pytest.mark.parametrize(
    ("path", "directory", "windows"),
    [
        ("/opt/../tokens/a.key", "/opt/../tokens", False),
        ("C:\\opt\\..\\tokens\\a.key", "C:\\opt\\..\\tokens", True),
    ],
)
def test_arc_key_path_with_dot_dot_is_refused_even_in_the_key_directory(
    path: str, directory: str, windows: bool
) -> None:
    assert valid_key_path(path, directory, windows) is False


# ---------------------------------------------------------------------------------------- retries, logged


def _retry_log(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "retrying" in record.getMessage()]


def test_a_transport_failure_retried_is_logged_with_the_scrubbed_detail_and_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    credential_engine = engine(APP_SERVICE, clock)
    script = Script(clock).queue(
        TransportFailure("connect", "refused by header-secret"), token_response("token-1")
    )

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        info = script.run(credential_engine.acquire(RESOURCE))

    assert isinstance(info, AccessTokenInfo) and info.token == "token-1"
    assert _retry_log(caplog) == ["App Service managed identity endpoint: refused by ***; retrying in 1.0 s"]


def test_an_http_answer_retried_is_logged_with_its_status_and_the_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    credential_engine = engine(IMDS, clock)
    script = Script(clock).queue(error_response(503, {"retry-after": "3"}), token_response("token-1"))

    with caplog.at_level(logging.INFO, logger="msi_credential"):
        script.run(credential_engine.acquire(RESOURCE))

    assert _retry_log(caplog) == ["IMDS: HTTP 503; retrying in 3.0 s"]


# ------------------------------------------------------------------------------------------------------ cache


class _RacedBucket(cache.Bucket):
    """A bucket whose entries another thread's sweep removes between this sweep's check and its pop."""

    def get(self, key: str, default: Optional[cache.CacheEntry] = None) -> Optional[cache.CacheEntry]:  # type: ignore[override]
        entry = super().get(key, default)
        super().pop(key, None)
        return entry


def test_a_sweep_racing_another_sweep_for_the_same_entry_does_not_raise() -> None:
    bucket = _RacedBucket()
    entry = cache.CacheEntry(AccessTokenInfo("t", 100), AccessToken("t", 100), 50.0, 90.0)
    bucket["a"] = entry
    bucket["a/.default"] = entry

    bucket.sweep(200.0)

    assert dict(bucket) == {}
