"""AKS identity bindings: workload identity through the token proxy, both faces, against the emulator playing the proxy
over real TLS (its own CA, a server name that is not its address)."""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import trustme

from msi_credential import CredentialUnavailableError, ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.detection import detect
from msi_credential.emulator import TOKEN_PROXY_SERVER_NAME, Emulator

STORAGE = "https://storage.azure.com/.default"
VAULT = "https://vault.azure.net/.default"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
PROXY_VARIABLES = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*PROXY_VARIABLES, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def proxy(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("workload_identity", token_proxy=True)
    return started


def environ_with(emulator: Emulator, **changes: Optional[str]) -> dict[str, str]:
    environ = dict(emulator.environ)
    for name, value in changes.items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    return environ


def proxied(face: Any, emulator: Emulator, **kwargs: Any) -> Any:
    kwargs.setdefault("_environ", dict(emulator.environ))
    kwargs.setdefault("retry_total", 0)
    return face.credential(enable_azure_proxy=True, **kwargs)


def other_ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode("ascii")


def refused(face: Any, emulator: Emulator, **kwargs: Any) -> ManagedIdentityError:
    with pytest.raises(ManagedIdentityError) as caught:
        proxied(face, emulator, **kwargs).get_token(STORAGE)
    assert not isinstance(caught.value, CredentialUnavailableError)
    assert caught.value.source is ManagedIdentitySource.WORKLOAD_IDENTITY
    return caught.value


# ------------------------------------------------------------------------------------------------ the proxy is used


def test_the_token_request_reaches_the_proxy_with_its_path_sni_and_ca(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)

    token = credential.get_token(STORAGE)

    [request] = proxy.requests
    assert request.scheme == "https"
    assert request.server_name == TOKEN_PROXY_SERVER_NAME  # SNI: the name, not the address it listens on
    assert (
        request.path == f"/aks-token-proxy/{TENANT}/oauth2/v2.0/token"
    )  # the request's path after the proxy's
    assert request.method == "POST"
    assert request.form["client_assertion"] == proxy.assertion
    assert request.form["client_id"] == proxy.system_identity.client_id
    assert request.form["scope"] == "https://storage.azure.com/.default"
    assert request.headers["x-ms-client-request-id"]
    assert token.token == proxy.issued_tokens()[-1]
    assert credential.source is ManagedIdentitySource.WORKLOAD_IDENTITY


def test_ca_data_instead_of_the_file(face: Any, proxy: Emulator) -> None:
    pem = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"]).read_text()
    environ = environ_with(proxy, AZURE_KUBERNETES_CA_FILE=None, AZURE_KUBERNETES_CA_DATA=pem)

    proxied(face, proxy, _environ=environ).get_token(STORAGE)

    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME]


def test_a_proxy_without_a_path_counts_as_slash(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity", token_proxy=True, proxy_path="/")
    base = emulator.environ["AZURE_AUTHORITY_HOST"]
    for value in (base, base + "/"):
        environ = environ_with(emulator, AZURE_KUBERNETES_TOKEN_PROXY=value)
        proxied(face, emulator, _environ=environ).get_token(STORAGE)
    assert [r.path for r in emulator.requests] == [f"/{TENANT}/oauth2/v2.0/token"] * 2


def test_a_proxy_path_with_a_trailing_slash_is_joined_once(face: Any, proxy: Emulator) -> None:
    environ = environ_with(
        proxy, AZURE_KUBERNETES_TOKEN_PROXY=proxy.environ["AZURE_KUBERNETES_TOKEN_PROXY"] + "/"
    )
    proxied(face, proxy, _environ=environ).get_token(STORAGE)
    assert proxy.requests[0].path == f"/aks-token-proxy/{TENANT}/oauth2/v2.0/token"


def test_environment_proxies_are_not_used_toward_the_token_proxy(
    face: Any, proxy: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nothing listens on port 9: a request sent through this proxy would fail
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")

    proxied(face, proxy, proxies={"https": "http://127.0.0.1:9"}).get_token(STORAGE)

    assert len(proxy.requests) == 1


def test_a_supplied_transport_is_gone_around_with_a_warning(
    face: Any, proxy: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    if face.is_async:
        from azure.core.pipeline.transport import AioHttpTransport

        transport: Any = AioHttpTransport()
    else:
        from azure.core.pipeline.transport import RequestsTransport

        transport = RequestsTransport()
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        proxied(face, proxy, transport=transport).get_token(STORAGE)
    assert len(proxy.requests) == 1
    assert "AKS token proxy" in caplog.text


def test_the_async_face_without_aiohttp_checks_the_ca_and_name_too(
    proxy: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import msi_credential._transport.aio as aio
    from msi_credential.aio import ManagedIdentityCredential

    monkeypatch.setattr(aio, "aiohttp", None)  # azure-core's requests-in-a-thread transport

    async def token(environ: dict[str, str]) -> Any:
        async with ManagedIdentityCredential(
            _environ=environ, enable_azure_proxy=True, share_cache=False, retry_total=0
        ) as credential:
            return await credential.get_token(STORAGE)

    asyncio.run(token(proxy.environ))
    with pytest.raises(ManagedIdentityError) as caught:
        asyncio.run(token(environ_with(proxy, AZURE_KUBERNETES_SNI_NAME="other.msi-emulator.invalid")))

    assert caught.value.error_code == "endpoint_unreachable"
    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME]


# ------------------------------------------------------------------------------------------------ TLS is checked


def test_a_wrong_ca_sends_nothing(face: Any, proxy: Emulator) -> None:
    environ = environ_with(proxy, AZURE_KUBERNETES_CA_FILE=None, AZURE_KUBERNETES_CA_DATA=other_ca_pem())

    error = refused(face, proxy, _environ=environ)

    assert error.error_code == "endpoint_unreachable"
    assert error.message.startswith("AKS token proxy at AZURE_KUBERNETES_TOKEN_PROXY (https://127.0.0.1:")
    assert error.client_request_id is not None and error.client_request_id in error.message
    assert proxy.requests == []
    assert proxy.assertion not in str(error) and proxy.assertion not in repr(error)


def test_system_cas_do_not_trust_the_proxy(face: Any, proxy: Emulator) -> None:
    environ = environ_with(proxy, AZURE_KUBERNETES_CA_FILE=None)

    assert refused(face, proxy, _environ=environ).error_code == "endpoint_unreachable"
    assert proxy.requests == []


@pytest.mark.parametrize("server_name", ["other.msi-emulator.invalid", None])
def test_a_wrong_or_missing_server_name_sends_nothing(
    face: Any, proxy: Emulator, server_name: Optional[str]
) -> None:
    # the emulator answers any SNI with its certificate (as most servers do): the client must refuse it
    environ = environ_with(proxy, AZURE_KUBERNETES_SNI_NAME=server_name)

    assert refused(face, proxy, _environ=environ).error_code == "endpoint_unreachable"
    assert proxy.requests == []


def test_tls_is_checked_even_with_connection_verify_false(face: Any, proxy: Emulator) -> None:
    environ = environ_with(proxy, AZURE_KUBERNETES_CA_FILE=None, AZURE_KUBERNETES_CA_DATA=other_ca_pem())

    refused(face, proxy, _environ=environ, connection_verify=False)

    assert proxy.requests == []


# ------------------------------------------------------------------------------------------------ CA rotation


def test_a_rotated_ca_file_is_picked_up(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    ca_file = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"])
    before = ca_file.read_text()

    proxy.rotate_proxy_ca()  # the server presents a certificate of a new CA, the file holds the new CA
    assert ca_file.read_text() != before
    credential.get_token(VAULT)

    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME] * 2


def test_the_rotated_server_is_refused_while_the_file_still_holds_the_old_ca(
    face: Any, proxy: Emulator
) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    ca_file = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"])
    old = ca_file.read_text()

    proxy.rotate_proxy_ca()
    ca_file.write_text(old)  # the cluster has not written the new CA yet
    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(VAULT)

    assert caught.value.error_code == "endpoint_unreachable"
    assert len(proxy.requests) == 1


def test_an_empty_ca_file_keeps_the_previous_ca(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"]).write_text("")  # mid-rotation

    credential.get_token(VAULT)

    assert len(proxy.requests) == 2


def test_an_unreadable_ca_file_after_a_good_one_keeps_the_previous_ca(face: Any, proxy: Emulator) -> None:
    credential = proxied(face, proxy)
    credential.get_token(STORAGE)
    os.remove(proxy.environ["AZURE_KUBERNETES_CA_FILE"])

    credential.get_token(VAULT)

    assert len(proxy.requests) == 2


def test_an_empty_ca_file_at_the_first_request_is_refused_before_sending(
    face: Any, proxy: Emulator, tmp_path: Path
) -> None:
    empty = tmp_path / "ca.pem"
    empty.write_text("")
    error = refused(face, proxy, _environ=environ_with(proxy, AZURE_KUBERNETES_CA_FILE=str(empty)))
    assert error.error_code == "invalid_token_proxy_ca"
    assert "AZURE_KUBERNETES_CA_FILE" in error.message
    assert proxy.requests == []


# ------------------------------------------------------------------------------------------------ bad configuration


def _garbage_file(tmp_path: Path) -> str:
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate")
    return str(path)


BAD_PROXY_URLS = [
    "http://127.0.0.1:1/proxy",
    "https://user:pass@127.0.0.1:1/proxy",
    "https://user@127.0.0.1:1",
    "https://127.0.0.1:1/proxy?x=1",
    "https://127.0.0.1:1/proxy?",
    "https://127.0.0.1:1/proxy#fragment",
    "ftp://127.0.0.1:1/",
    "https:///no-host",
    "https://127.0.0.1:99999/",
    "127.0.0.1:1",
    "https://127.0.0.1:1/pro xy",
]


@pytest.mark.parametrize("url", BAD_PROXY_URLS)
def test_a_bad_proxy_url_is_refused_naming_the_variable(face: Any, proxy: Emulator, url: str) -> None:
    error = refused(face, proxy, _environ=environ_with(proxy, AZURE_KUBERNETES_TOKEN_PROXY=url))
    assert error.error_code in ("invalid_token_proxy", "invalid_endpoint")
    assert "AZURE_KUBERNETES_TOKEN_PROXY" in error.message
    assert proxy.requests == []


@pytest.mark.parametrize(
    ("changes", "code", "named"),
    [
        ({"AZURE_KUBERNETES_CA_DATA": "-"}, "invalid_token_proxy_ca", "AZURE_KUBERNETES_CA_DATA"),
        (
            {"AZURE_KUBERNETES_CA_FILE": None, "AZURE_KUBERNETES_CA_DATA": "not a certificate"},
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_DATA",
        ),
        (
            {
                "AZURE_KUBERNETES_CA_FILE": None,
                "AZURE_KUBERNETES_CA_DATA": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            },
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_DATA",
        ),
        (
            {"AZURE_KUBERNETES_CA_FILE": "/nonexistent/ca.pem"},
            "invalid_token_proxy_ca",
            "AZURE_KUBERNETES_CA_FILE",
        ),
        ({"AZURE_KUBERNETES_CA_FILE": "GARBAGE"}, "invalid_token_proxy_ca", "AZURE_KUBERNETES_CA_FILE"),
        ({"AZURE_KUBERNETES_CA_FILE": "DIRECTORY"}, "invalid_token_proxy_ca", "AZURE_KUBERNETES_CA_FILE"),
        ({"AZURE_KUBERNETES_SNI_NAME": "bad name"}, "invalid_token_proxy_sni", "AZURE_KUBERNETES_SNI_NAME"),
        ({"AZURE_KUBERNETES_SNI_NAME": "a/b"}, "invalid_token_proxy_sni", "AZURE_KUBERNETES_SNI_NAME"),
        ({"AZURE_KUBERNETES_TOKEN_PROXY": None}, "invalid_token_proxy", "AZURE_KUBERNETES_TOKEN_PROXY"),
        (
            {"AZURE_KUBERNETES_TOKEN_PROXY": None, "AZURE_KUBERNETES_CA_FILE": None},
            "invalid_token_proxy",
            "AZURE_KUBERNETES_SNI_NAME",
        ),
        (
            {"AZURE_KUBERNETES_TOKEN_PROXY": None, "AZURE_KUBERNETES_SNI_NAME": None},
            "invalid_token_proxy",
            "AZURE_KUBERNETES_CA_FILE",
        ),
        (
            {
                "AZURE_KUBERNETES_TOKEN_PROXY": None,
                "AZURE_KUBERNETES_SNI_NAME": None,
                "AZURE_KUBERNETES_CA_FILE": None,
                "AZURE_KUBERNETES_CA_DATA": "x",
            },
            "invalid_token_proxy",
            "AZURE_KUBERNETES_CA_DATA",
        ),
    ],
)
def test_each_bad_configuration_is_refused_before_any_request(
    face: Any, proxy: Emulator, tmp_path: Path, changes: dict[str, Optional[str]], code: str, named: str
) -> None:
    special = {"GARBAGE": _garbage_file(tmp_path), "DIRECTORY": str(tmp_path)}
    resolved = {name: special.get(value, value) if value else value for name, value in changes.items()}

    error = refused(face, proxy, _environ=environ_with(proxy, **resolved))

    assert error.error_code == code
    assert named in error.message
    assert proxy.requests == []
    assert pickle.loads(pickle.dumps(error)).error_code == code


def test_both_ca_variables_are_refused(face: Any, proxy: Emulator) -> None:
    pem = Path(proxy.environ["AZURE_KUBERNETES_CA_FILE"]).read_text()
    error = refused(face, proxy, _environ=environ_with(proxy, AZURE_KUBERNETES_CA_DATA=pem))
    assert error.error_code == "invalid_token_proxy_ca"
    assert "AZURE_KUBERNETES_CA_FILE" in error.message and "AZURE_KUBERNETES_CA_DATA" in error.message
    assert proxy.requests == []


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_enable_azure_proxy_must_be_a_bool_at_construction(face: Any, value: Any) -> None:
    with pytest.raises(ValueError, match="enable_azure_proxy"):
        face.credential(enable_azure_proxy=value)


# ------------------------------------------------------------------------------------------------ without opting in


def test_without_the_opt_in_the_variables_are_ignored(face: Any, proxy: Emulator) -> None:
    # even an invalid proxy configuration: the credential goes to AZURE_AUTHORITY_HOST as before
    environ = environ_with(proxy, AZURE_KUBERNETES_TOKEN_PROXY="http://bad", AZURE_KUBERNETES_CA_DATA="x")
    credential = face.credential(_environ=environ, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    # AZURE_AUTHORITY_HOST is the emulator's address, whose certificate names neither it nor a trusted CA
    assert caught.value.error_code == "endpoint_unreachable"
    assert "AZURE_AUTHORITY_HOST" in caught.value.message
    assert proxy.requests == []


def test_opted_in_without_any_proxy_variable_goes_to_the_authority(emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    config = detect(
        dict(emulator.environ), platform="linux", path_exists=lambda p: False, enable_azure_proxy=True
    )
    assert config.token_proxy is None and config.problem is None
    assert config.endpoint == emulator.url


def test_detection_keeps_the_proxy_out_of_other_sources() -> None:
    environ = {
        "IDENTITY_ENDPOINT": "http://127.0.0.1:1/token",
        "IDENTITY_HEADER": "h",
        "AZURE_KUBERNETES_TOKEN_PROXY": "https://127.0.0.1:2",
        "AZURE_KUBERNETES_SNI_NAME": "x.invalid",
    }
    config = detect(environ, platform="linux", path_exists=lambda p: False, enable_azure_proxy=True)
    assert config.source is ManagedIdentitySource.APP_SERVICE
    assert config.token_proxy is None and config.endpoint == "http://127.0.0.1:1/token"


def test_a_pickled_credential_keeps_the_opt_in(proxy: Emulator) -> None:
    from msi_credential import ManagedIdentityCredential

    credential = ManagedIdentityCredential(enable_azure_proxy=True, share_cache=False)
    copy = pickle.loads(pickle.dumps(credential))
    assert copy._arguments["enable_azure_proxy"] is True


# ------------------------------------------------------------------------------------------------ other clients


def test_azure_identity_with_enable_azure_proxy_gets_a_token_from_the_emulated_proxy(
    proxy: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure.identity import WorkloadIdentityCredential

    for name, value in proxy.environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("NO_PROXY", "*")

    import importlib.util

    if importlib.util.find_spec("azure.identity._internal.token_binding_transport_mixin") is None:
        # azure-identity before 1.27 (the last release for Python 3.9 is 1.26) has no identity bindings: it ignores
        # the opt-in, goes to AZURE_AUTHORITY_HOST, and refuses that server's certificate (made for the proxy's
        # name). Nothing is issued.
        from azure.core.exceptions import AzureError

        with pytest.raises(AzureError):
            WorkloadIdentityCredential(enable_azure_proxy=True).get_token(STORAGE)
        assert proxy.issued_tokens() == []
        return

    token = WorkloadIdentityCredential(enable_azure_proxy=True).get_token(STORAGE)

    assert token.token == proxy.issued_tokens()[-1]
    assert proxy.requests[-1].server_name == TOKEN_PROXY_SERVER_NAME


# ------------------------------------------------------------------------------------------------ the command line


@pytest.fixture
def stop_immediately(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from msi_credential.emulator import _cli

    monkeypatch.setattr(_cli, "wait_until_stopped", lambda stop: None)
    yield


def test_emulate_token_proxy_prints_the_variables(stop_immediately: None) -> None:
    from msi_credential import cli

    out = io.StringIO()
    assert (
        cli.main(
            ["emulate", "--source", "workload_identity", "--token-proxy", "--format", "json"], stdout=out
        )
        == 0
    )
    document = json.loads(out.getvalue().splitlines()[0])
    env = document["env"]
    assert env["AZURE_KUBERNETES_TOKEN_PROXY"].startswith("https://127.0.0.1:")
    assert env["AZURE_KUBERNETES_TOKEN_PROXY"].endswith("/aks-token-proxy")
    assert env["AZURE_KUBERNETES_SNI_NAME"] == TOKEN_PROXY_SERVER_NAME
    assert env["AZURE_KUBERNETES_CA_FILE"] == document["ca_file"]
    assert not os.path.exists(document["ca_file"])  # removed at stop
    assert document["token_proxy"] == {"server_name": TOKEN_PROXY_SERVER_NAME, "path": "/aks-token-proxy"}
    assert "REQUESTS_CA_BUNDLE" not in env


def test_emulate_token_proxy_shell_form_explains_it(stop_immediately: None) -> None:
    from msi_credential import cli

    out = io.StringIO()
    assert cli.main(["emulate", "--source", "workload_identity", "--token-proxy"], stdout=out) == 0
    text = out.getvalue()
    assert "export AZURE_KUBERNETES_SNI_NAME=token-proxy.msi-emulator.invalid" in text
    assert "enable_azure_proxy=True" in text


def test_emulate_token_proxy_needs_workload_identity(capsys: pytest.CaptureFixture[str]) -> None:
    from msi_credential import cli

    assert cli.main(["emulate", "--source", "imds", "--token-proxy"], stdout=io.StringIO()) == 2
    assert "--token-proxy needs --source workload_identity" in capsys.readouterr().err


def test_demo_includes_the_token_proxy(capsys: pytest.CaptureFixture[str]) -> None:
    from msi_credential import cli

    out = io.StringIO()
    assert cli.main(["demo"], stdout=out) == 0
    [row] = [line for line in out.getvalue().splitlines() if line.startswith("+ token proxy ")]
    detected, first, first_requests, second, second_requests, audience = row.split()[3:]
    assert detected == "workload_identity"
    assert first.endswith("ms") and first_requests == "1"
    assert second.endswith("us") and second_requests == "0"  # from the cache
    assert audience == "https://storage.azure.com"


def test_rotate_proxy_ca_needs_the_token_proxy(emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    with pytest.raises(RuntimeError, match="token_proxy"):
        emulator.rotate_proxy_ca()
    with pytest.raises(ValueError, match="workload identity"):
        Emulator("imds", token_proxy=True)


def test_a_server_name_with_a_trailing_dot_is_the_same_name_on_both_faces(face: Any, proxy: Emulator) -> None:
    """A fully qualified name may end with the root's dot: sent and verified without it, the same on both faces."""
    environ = environ_with(proxy, AZURE_KUBERNETES_SNI_NAME=TOKEN_PROXY_SERVER_NAME + ".")

    token = proxied(face, proxy, _environ=environ).get_token(STORAGE)

    assert token.token == proxy.issued_tokens()[-1]
    assert [r.server_name for r in proxy.requests] == [TOKEN_PROXY_SERVER_NAME]
