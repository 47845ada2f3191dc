"""msi_credential/_engine/detection.py: ``detect()``, docs/protocols.md section 1 (first match wins), the endpoint
safety rules of sections 6 and 9, the AKS token proxy of section 10, the detection reasons, and the refusals word for
word, called directly with an environment, a platform and a file check. No sockets, nothing read (but for one
``detect()`` call on a started emulator's environment): the mutation run of docs/mutation.md runs them (CA PEMs come
from trustme).

The last three sections go through the credential, both faces (the ``face`` fixture): which source it detects (the
emulator), and the endpoints and secrets that detection refuses before any socket opens (invalid_endpoint,
invalid_secret) without quoting the secret; a loopback ``capturing_server`` shows that nothing was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import pytest
import trustme

from msi_credential import ManagedIdentityError, ManagedIdentitySource
from msi_credential._engine.detection import (
    ARC_DEFAULT_ENDPOINT,
    IMDS_PATH,
    TOKEN_PROXY_VARIABLES,
    SourceConfig,
    TokenProxy,
    _endpoint_variables,
    _token_proxy_base,
    ca_problem,
    detect,
    detection_reason,
    is_local_host,
    normalise_thumbprint,
)
from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import Emulator

from ..transport import support
from ..transport.support import SCOPE, assert_secret_absent, http_answer, token_body
from .scripted import APP_SERVICE

THUMBPRINT = "0123456789abcdef0123456789abcdef01234567"
HEADER_SECRET = "header-secret-value-4f9c"
MSI_SECRET_VALUE = "msi-secret-value-7d21"
LINUX_HIMDS = "/opt/azcmagent/bin/himds"
IMDS_URL = "http://169.254.169.254/metadata/identity/oauth2/token"
WORKLOAD = S.WORKLOAD_IDENTITY
TENANT = "tenant-1"
AUTHORITY_PATH = f"/{TENANT}/oauth2/v2.0/token"
PROXY = "https://127.0.0.1:8443/proxy"

ALL_VARIABLES = {
    "IDENTITY_ENDPOINT": "https://10.0.0.4:2377/metadata/identity/oauth2/token",
    "IDENTITY_HEADER": HEADER_SECRET,
    "IDENTITY_SERVER_THUMBPRINT": THUMBPRINT,
    "IMDS_ENDPOINT": "http://localhost:40342",
    "MSI_ENDPOINT": "http://localhost:8081/msi/token",
    "MSI_SECRET": MSI_SECRET_VALUE,
    "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/azure/tokens/azure-identity-token",
    "AZURE_TENANT_ID": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:8080",
}


def no_files(path: str) -> bool:
    return False


def files(*present: str) -> Callable[[str], bool]:
    return lambda path: path in present


def run(
    environ: dict[str, str],
    *,
    platform: str = "linux",
    path_exists: Callable[[str], bool] = no_files,
    enable_azure_proxy: bool = False,
):
    return detect(environ, platform=platform, path_exists=path_exists, enable_azure_proxy=enable_azure_proxy)


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode("ascii")


def _workload(**changes: Optional[str]) -> dict[str, str]:
    """A workload identity environment; a change to None leaves that variable out."""
    environ: dict[str, Optional[str]] = {
        "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
        "AZURE_TENANT_ID": TENANT,
        "AZURE_CLIENT_ID": "client-1",
        "AZURE_AUTHORITY_HOST": "https://login.example.test",
        **changes,
    }
    return {name: value for name, value in environ.items() if value is not None}


def _detect(environ: dict[str, str], *, opted_in: bool = True, himds: bool = False) -> SourceConfig:
    return detect(environ, platform="linux", path_exists=lambda _: himds, enable_azure_proxy=opted_in)


def _proxied(**changes: Optional[str]) -> SourceConfig:
    return _detect(_workload(**{"AZURE_KUBERNETES_TOKEN_PROXY": PROXY, **changes}))


# --- section 1, row by row -----------------------------------------------------------------------------------


def test_row1_service_fabric_needs_endpoint_header_and_thumbprint() -> None:
    config = run(
        {
            "IDENTITY_ENDPOINT": "https://10.0.0.4:2377/metadata/identity/oauth2/token",
            "IDENTITY_HEADER": HEADER_SECRET,
            "IDENTITY_SERVER_THUMBPRINT": THUMBPRINT,
        }
    )
    assert config.source is S.SERVICE_FABRIC
    assert config.endpoint == "https://10.0.0.4:2377/metadata/identity/oauth2/token"
    assert config.endpoint_variable == "IDENTITY_ENDPOINT"
    assert config.secret == HEADER_SECRET
    assert config.thumbprint == THUMBPRINT
    assert config.problem is None


def test_row2_app_service_is_endpoint_and_header() -> None:
    config = run({"IDENTITY_ENDPOINT": "http://localhost:42356/msi/token", "IDENTITY_HEADER": HEADER_SECRET})
    assert config.source is S.APP_SERVICE
    assert config.endpoint == "http://localhost:42356/msi/token"
    assert config.endpoint_variable == "IDENTITY_ENDPOINT"
    assert config.secret == HEADER_SECRET
    assert config.problem is None


def test_row3_azure_arc_is_identity_endpoint_and_imds_endpoint() -> None:
    config = run(
        {
            "IDENTITY_ENDPOINT": "http://localhost:40342/metadata/identity/oauth2/token",
            "IMDS_ENDPOINT": "http://localhost:40342",
        }
    )
    assert config.source is S.AZURE_ARC
    assert config.endpoint == "http://localhost:40342/metadata/identity/oauth2/token"
    assert config.endpoint_variable == "IDENTITY_ENDPOINT"
    assert config.secret is None
    assert config.platform == "linux"
    assert config.arc_key_directory == "/var/opt/azcmagent/tokens"
    assert config.problem is None


def test_row4_machine_learning_is_msi_endpoint_and_msi_secret() -> None:
    config = run(
        {
            "MSI_ENDPOINT": "http://127.0.0.1:46808/MSI/auth",
            "MSI_SECRET": MSI_SECRET_VALUE,
            "DEFAULT_IDENTITY_CLIENT_ID": "ml-default-client",
        }
    )
    assert config.source is S.MACHINE_LEARNING
    assert config.endpoint == "http://127.0.0.1:46808/MSI/auth"
    assert config.endpoint_variable == "MSI_ENDPOINT"
    assert config.secret == MSI_SECRET_VALUE
    assert config.default_client_id == "ml-default-client"
    assert config.problem is None


def test_row5_cloud_shell_is_msi_endpoint_alone() -> None:
    config = run({"MSI_ENDPOINT": "http://localhost:50342/oauth2/token"})
    assert config.source is S.CLOUD_SHELL
    assert config.endpoint == "http://localhost:50342/oauth2/token"
    assert config.endpoint_variable == "MSI_ENDPOINT"
    assert config.secret is None
    assert config.problem is None


def test_row6_workload_identity_defaults_the_authority_host() -> None:
    config = run(
        {
            "AZURE_FEDERATED_TOKEN_FILE": "/var/run/secrets/token",
            "AZURE_TENANT_ID": "contoso.onmicrosoft.com",
            "AZURE_CLIENT_ID": "wi-client",
        }
    )
    assert config.source is S.WORKLOAD_IDENTITY
    assert config.endpoint == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    assert config.tenant_id == "contoso.onmicrosoft.com"
    assert config.client_id == "wi-client"
    assert config.token_file == "/var/run/secrets/token"
    assert config.problem is None


@pytest.mark.parametrize(
    ("authority", "endpoint"),
    [
        ("https://login.microsoftonline.us/", "https://login.microsoftonline.us/t1/oauth2/v2.0/token"),
        ("login.chinacloudapi.cn", "https://login.chinacloudapi.cn/t1/oauth2/v2.0/token"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000/t1/oauth2/v2.0/token"),
    ],
)
def test_row6_workload_identity_uses_azure_authority_host(authority: str, endpoint: str) -> None:
    config = run(
        {"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "t1", "AZURE_AUTHORITY_HOST": authority}
    )
    assert config.source is S.WORKLOAD_IDENTITY
    assert config.endpoint == endpoint
    assert config.problem is None


def test_row6_workload_identity_client_id_is_optional_at_detection() -> None:
    config = run({"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "t1"})
    assert config.source is S.WORKLOAD_IDENTITY
    assert config.client_id is None


@pytest.mark.parametrize("tenant", ["bad/tenant", "t?x=1", "t@x", "t%2f"])
def test_row6_workload_identity_invalid_tenant_is_a_problem(tenant: str) -> None:
    config = run({"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": tenant})
    assert config.source is S.WORKLOAD_IDENTITY
    assert config.problem is not None
    assert config.problem[0] == "invalid_tenant_id"


@pytest.mark.parametrize(
    "authority", ["http://login.microsoftonline.com", "http://10.0.0.1", "ftp://login.example", "https://a@b"]
)
def test_row6_workload_identity_authority_must_be_https_or_loopback_http(authority: str) -> None:
    config = run(
        {"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "t1", "AZURE_AUTHORITY_HOST": authority}
    )
    assert config.problem is not None
    assert config.problem[0] == "invalid_endpoint"
    assert "AZURE_AUTHORITY_HOST" in config.problem[1]


@pytest.mark.parametrize(
    "environ",
    [{"AZURE_FEDERATED_TOKEN_FILE": "/t"}, {"AZURE_TENANT_ID": "t1"}],
    ids=["file-only", "tenant-only"],
)
def test_row6_workload_identity_needs_both_file_and_tenant(environ: dict[str, str]) -> None:
    assert run(environ).source is S.IMDS


def test_row7_linux_himds_file_means_azure_arc_at_the_default_endpoint() -> None:
    seen: list[str] = []

    def exists(path: str) -> bool:
        seen.append(path)
        return path == LINUX_HIMDS

    config = run({}, path_exists=exists)
    assert seen == [LINUX_HIMDS]
    assert config.source is S.AZURE_ARC
    assert config.endpoint == ARC_DEFAULT_ENDPOINT
    assert config.endpoint == "http://127.0.0.1:40342/metadata/identity/oauth2/token"
    assert config.platform == "linux"
    assert config.arc_key_directory == "/var/opt/azcmagent/tokens"
    assert config.problem is None


def test_row7_windows_himds_path_comes_from_program_files() -> None:
    seen: list[str] = []
    himds = "D:\\Apps\\AzureConnectedMachineAgent\\himds.exe"

    def exists(path: str) -> bool:
        seen.append(path)
        return path == himds

    config = run(
        {"ProgramFiles": "D:\\Apps\\", "ProgramData": "E:\\Data"},
        platform="win32",
        path_exists=exists,
    )
    assert seen == [himds]
    assert config.source is S.AZURE_ARC
    assert config.endpoint == ARC_DEFAULT_ENDPOINT
    assert config.platform == "windows"
    assert config.arc_key_directory == "E:\\Data\\AzureConnectedMachineAgent\\Tokens"


def test_row7_windows_does_not_look_for_the_linux_himds_path() -> None:
    seen: list[str] = []

    def exists(path: str) -> bool:
        seen.append(path)
        return True

    config = run({"ProgramFiles": "C:\\Program Files"}, platform="win32", path_exists=exists)
    assert seen == ["C:\\Program Files\\AzureConnectedMachineAgent\\himds.exe"]
    assert config.source is S.AZURE_ARC


def test_row7_missing_himds_file_falls_through_to_imds() -> None:
    config = run({"ProgramFiles": "C:\\Program Files"}, platform="win32")
    assert config.source is S.IMDS


def test_arc_key_directory_can_be_substituted() -> None:
    config = detect({}, platform="linux", path_exists=files(LINUX_HIMDS), arc_key_directory="/tmp/keys")
    assert config.arc_key_directory == "/tmp/keys"


def test_row8_default_is_imds_at_the_link_local_address() -> None:
    config = run({})
    assert config.source is S.IMDS
    assert config.endpoint == IMDS_URL
    assert not config.pod_identity
    assert config.problem is None


@pytest.mark.parametrize(
    ("host", "endpoint"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/metadata/identity/oauth2/token"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/metadata/identity/oauth2/token"),
        ("http://localhost:2579//", "http://localhost:2579/metadata/identity/oauth2/token"),
        ("http://169.254.169.254", IMDS_URL),
    ],
)
def test_row8_pod_identity_authority_host_replaces_the_imds_host(host: str, endpoint: str) -> None:
    config = run({"AZURE_POD_IDENTITY_AUTHORITY_HOST": host})
    assert config.source is S.IMDS
    assert config.endpoint == endpoint
    assert config.endpoint_variable == "AZURE_POD_IDENTITY_AUTHORITY_HOST"
    assert config.pod_identity
    assert config.problem is None


# --- precedence ------------------------------------------------------------------------------------------------


def test_all_variables_set_is_service_fabric() -> None:
    assert run(ALL_VARIABLES, path_exists=lambda path: True).source is S.SERVICE_FABRIC


def test_endpoint_and_header_beat_imds_endpoint_as_app_service() -> None:
    environ = {k: ALL_VARIABLES[k] for k in ("IMDS_ENDPOINT", "MSI_ENDPOINT", "MSI_SECRET")}
    environ.update(IDENTITY_ENDPOINT="http://localhost:1/token", IDENTITY_HEADER=HEADER_SECRET)
    assert run(environ).source is S.APP_SERVICE


def test_identity_endpoint_and_imds_endpoint_beat_msi_variables_as_azure_arc() -> None:
    environ = {
        k: v for k, v in ALL_VARIABLES.items() if k not in ("IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT")
    }
    environ["IDENTITY_ENDPOINT"] = "http://localhost:40342/metadata/identity/oauth2/token"
    assert run(environ).source is S.AZURE_ARC


def test_thumbprint_without_header_is_not_service_fabric() -> None:
    environ = {
        "IDENTITY_ENDPOINT": "http://localhost:40342/metadata/identity/oauth2/token",
        "IDENTITY_SERVER_THUMBPRINT": THUMBPRINT,
        "IMDS_ENDPOINT": "http://localhost:40342",
    }
    assert run(environ).source is S.AZURE_ARC


def test_msi_endpoint_and_secret_beat_workload_identity_as_machine_learning() -> None:
    environ = {
        k: ALL_VARIABLES[k]
        for k in ("MSI_ENDPOINT", "MSI_SECRET", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID")
    }
    assert run(environ).source is S.MACHINE_LEARNING


def test_msi_endpoint_alone_beats_workload_identity_as_cloud_shell() -> None:
    environ = {k: ALL_VARIABLES[k] for k in ("MSI_ENDPOINT", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_TENANT_ID")}
    assert run(environ).source is S.CLOUD_SHELL


def test_identity_endpoint_alone_warns_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        config = run(
            {"IDENTITY_ENDPOINT": "http://localhost:1/token", "MSI_ENDPOINT": "http://localhost:2/t"}
        )
    assert config.source is S.CLOUD_SHELL
    assert any("IDENTITY_ENDPOINT" in record.getMessage() for record in caplog.records)


def test_identity_endpoint_alone_falls_to_imds() -> None:
    assert run({"IDENTITY_ENDPOINT": "http://localhost:1/token"}).source is S.IMDS


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({"IDENTITY_ENDPOINT": "http://localhost:1/t", "IDENTITY_HEADER": HEADER_SECRET}, S.APP_SERVICE),
        ({"IDENTITY_ENDPOINT": "http://localhost:1/t", "IMDS_ENDPOINT": "http://localhost:1"}, S.AZURE_ARC),
        ({"MSI_ENDPOINT": "http://localhost:1/t", "MSI_SECRET": MSI_SECRET_VALUE}, S.MACHINE_LEARNING),
        ({"MSI_ENDPOINT": "http://localhost:1/t"}, S.CLOUD_SHELL),
        ({"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "t1"}, S.WORKLOAD_IDENTITY),
    ],
    ids=["app_service", "azure_arc", "machine_learning", "cloud_shell", "workload_identity"],
)
def test_environment_rows_beat_the_himds_file(environ: dict[str, str], source: S) -> None:
    assert run(environ, path_exists=lambda path: True).source is source


def test_himds_file_beats_pod_identity_host() -> None:
    config = run(
        {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:8080"}, path_exists=files(LINUX_HIMDS)
    )
    assert config.source is S.AZURE_ARC
    assert config.endpoint == ARC_DEFAULT_ENDPOINT


# --- empty and whitespace values count as unset --------------------------------------------------------------


@pytest.mark.parametrize("blank", ["", " ", "\t", " \n "])
def test_blank_values_count_as_unset(blank: str) -> None:
    assert run({"IDENTITY_ENDPOINT": "http://localhost:1/t", "IDENTITY_HEADER": blank}).source is S.IMDS
    sf = {"IDENTITY_ENDPOINT": "https://sf:2377/t", "IDENTITY_HEADER": HEADER_SECRET}
    assert run({**sf, "IDENTITY_SERVER_THUMBPRINT": blank}).source is S.APP_SERVICE
    assert run({"MSI_ENDPOINT": "http://localhost:1/t", "MSI_SECRET": blank}).source is S.CLOUD_SHELL
    assert run({"MSI_ENDPOINT": blank}).source is S.IMDS
    assert run({"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": blank}).source is S.IMDS
    assert run({"AZURE_POD_IDENTITY_AUTHORITY_HOST": blank}).endpoint == IMDS_URL
    assert run({"IDENTITY_ENDPOINT": blank, "IMDS_ENDPOINT": "http://localhost:1"}).source is S.IMDS
    wi = {"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "t1", "AZURE_AUTHORITY_HOST": blank}
    assert run(wi).endpoint.startswith("https://login.microsoftonline.com/")
    ml = {"MSI_ENDPOINT": "http://localhost:1/t", "MSI_SECRET": "s3cr3t", "DEFAULT_IDENTITY_CLIENT_ID": blank}
    assert run(ml).default_client_id is None


def test_windows_without_program_files_skips_the_himds_check() -> None:
    seen: list[str] = []

    def exists(path: str) -> bool:
        seen.append(path)
        return True

    assert run({"ProgramFiles": "  "}, platform="win32", path_exists=exists).source is S.IMDS
    assert seen == []


# --- section 9: endpoint safety -------------------------------------------------------------------------------

REJECTED_ENDPOINTS = [
    "http://0.0.0.0:8080/token",
    "http://10.0.0.1/token",
    "http://192.168.1.1/token",
    "http://172.16.0.1/token",
    "http://169.254.169.254.evil.com/token",
    "http://127.0.0.1@evil.com/token",
    "http://user:pw@127.0.0.1/token",
    "http://2130706433/token",
    "http://0x7f000001/token",
    "http://[fe80::1]/token",
    "http://[::ffff:127.0.0.1]/token",
    "ftp://127.0.0.1/token",
    "file:///etc/passwd",
    "127.0.0.1:8080/token",
    "http://localhost.evil.com/token",
    "http://127.0.0.1:99999/token",
    "http://evil.com/token",
]

ACCEPTED_ENDPOINTS = [
    "http://localhost/token",
    "http://LOCALHOST:42356/msi/token",
    "http://127.0.0.1:41741/msi/token",
    "http://127.1.2.3/token",
    "http://169.254.169.254/metadata/identity/oauth2/token",
    "http://169.254.1.2:80/token",
    "http://[::1]:8080/token",
    "https://localhost:8443/token",
]


def _endpoint_environs(url: str) -> list[tuple[dict[str, str], str]]:
    return [
        ({"IDENTITY_ENDPOINT": url, "IDENTITY_HEADER": HEADER_SECRET}, "IDENTITY_ENDPOINT"),
        ({"IDENTITY_ENDPOINT": url, "IMDS_ENDPOINT": "http://localhost:40342"}, "IDENTITY_ENDPOINT"),
        ({"MSI_ENDPOINT": url, "MSI_SECRET": MSI_SECRET_VALUE}, "MSI_ENDPOINT"),
        ({"MSI_ENDPOINT": url}, "MSI_ENDPOINT"),
    ]


@pytest.mark.parametrize("url", REJECTED_ENDPOINTS)
def test_unsafe_endpoints_are_invalid_endpoint_naming_the_variable(url: str) -> None:
    for environ, variable in _endpoint_environs(url):
        config = run(environ)
        assert config.problem is not None, (environ, config)
        code, message = config.problem
        assert code == "invalid_endpoint"
        assert variable in message
        assert HEADER_SECRET not in message
        assert MSI_SECRET_VALUE not in message


@pytest.mark.parametrize("url", ACCEPTED_ENDPOINTS)
def test_loopback_and_link_local_endpoints_are_accepted(url: str) -> None:
    for environ, _ in _endpoint_environs(url):
        config = run(environ)
        assert config.problem is None, (environ, config)


@pytest.mark.parametrize(
    "host",
    [
        "http://0.0.0.0",
        "http://10.0.0.1",
        "http://192.168.1.1",
        "http://169.254.169.254.evil.com",
        "http://127.0.0.1@evil.com",
        "http://2130706433",
        "http://[fe80::1]",
        "http://[::ffff:127.0.0.1]",
        "ftp://127.0.0.1",
    ],
)
def test_unsafe_pod_identity_host_is_invalid_endpoint_naming_the_variable(host: str) -> None:
    config = run({"AZURE_POD_IDENTITY_AUTHORITY_HOST": host})
    assert config.source is S.IMDS
    assert config.problem is not None
    assert config.problem[0] == "invalid_endpoint"
    assert "AZURE_POD_IDENTITY_AUTHORITY_HOST" in config.problem[1]


@pytest.mark.parametrize(
    "host",
    [
        "http://localhost",
        "http://127.0.0.1:8080",
        "http://127.1.2.3",
        "http://169.254.169.254",
        "http://[::1]",
    ],
)
def test_safe_pod_identity_host_is_accepted(host: str) -> None:
    assert run({"AZURE_POD_IDENTITY_AUTHORITY_HOST": host}).problem is None


# --- section 6: Service Fabric endpoint and thumbprint --------------------------------------------------------


SERVICE_FABRIC_ACCEPTED = [
    "https://10.0.0.4:2377/t",
    "https://sf.cluster.example:2377/t",
    "https://localhost/t",
    "https://[fd00::1]:1/t",
]
SERVICE_FABRIC_REJECTED = [
    "http://10.0.0.4:2377/t",
    "http://localhost/t",
    "https:///t",
    "https://",
    "ftp://host/t",
    "https://u@host/t",
]


def _service_fabric(endpoint: str, thumbprint: str = THUMBPRINT) -> SourceConfig:
    return run(
        {
            "IDENTITY_ENDPOINT": endpoint,
            "IDENTITY_HEADER": HEADER_SECRET,
            "IDENTITY_SERVER_THUMBPRINT": thumbprint,
        }
    )


@pytest.mark.parametrize("endpoint", SERVICE_FABRIC_ACCEPTED)
def test_service_fabric_accepts_any_https_host(endpoint: str) -> None:
    config = _service_fabric(endpoint)
    assert config.source is S.SERVICE_FABRIC
    assert config.problem is None


@pytest.mark.parametrize("endpoint", SERVICE_FABRIC_REJECTED)
def test_service_fabric_endpoint_must_be_https_with_a_host(endpoint: str) -> None:
    config = _service_fabric(endpoint)
    assert config.source is S.SERVICE_FABRIC
    assert config.problem is not None
    code, message = config.problem
    assert code == "invalid_endpoint"
    assert "IDENTITY_ENDPOINT" in message
    assert HEADER_SECRET not in message


@pytest.mark.parametrize(
    "thumbprint",
    [
        THUMBPRINT,
        THUMBPRINT.upper(),
        ":".join(THUMBPRINT[i : i + 2] for i in range(0, 40, 2)),
        " ".join(THUMBPRINT[i : i + 2].upper() for i in range(0, 40, 2)),
    ],
)
def test_service_fabric_thumbprint_allows_colons_spaces_and_upper_case(thumbprint: str) -> None:
    assert _service_fabric("https://10.0.0.4:2377/t", thumbprint).problem is None


@pytest.mark.parametrize(
    "thumbprint",
    [THUMBPRINT[:-1], THUMBPRINT + "0", "g" * 40, "0x" + THUMBPRINT[2:], "a" * 64, "not-a-thumbprint"],
)
def test_service_fabric_bad_thumbprint_is_invalid_thumbprint(thumbprint: str) -> None:
    config = _service_fabric("https://10.0.0.4:2377/t", thumbprint)
    assert config.problem is not None
    code, message = config.problem
    assert code == "invalid_thumbprint"
    assert "IDENTITY_SERVER_THUMBPRINT" in message
    assert HEADER_SECRET not in message


def test_service_fabric_bad_endpoint_is_reported_before_bad_thumbprint() -> None:
    config = _service_fabric("http://10.0.0.4:2377/t", "nope")
    assert config.problem is not None
    assert config.problem[0] == "invalid_endpoint"


def test_problem_messages_never_contain_the_secret_even_when_it_is_in_the_url() -> None:
    config = run({"IDENTITY_ENDPOINT": f"http://10.0.0.1/{HEADER_SECRET}", "IDENTITY_HEADER": HEADER_SECRET})
    assert config.problem is not None
    assert HEADER_SECRET not in config.problem[1]
    config = run({"MSI_ENDPOINT": f"http://{MSI_SECRET_VALUE}@127.0.0.1/t", "MSI_SECRET": MSI_SECRET_VALUE})
    assert config.problem is not None
    assert MSI_SECRET_VALUE not in config.problem[1]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (THUMBPRINT, THUMBPRINT),
        (THUMBPRINT.upper(), THUMBPRINT),
        (":".join(THUMBPRINT[i : i + 2] for i in range(0, 40, 2)), THUMBPRINT),
        ("  " + THUMBPRINT[:20] + " \t" + THUMBPRINT[20:] + "\n", THUMBPRINT),
        (THUMBPRINT[:-1], None),
        (THUMBPRINT + "a", None),
        ("z" * 40, None),
        ("", None),
        ("-".join(THUMBPRINT[i : i + 2] for i in range(0, 40, 2)), None),
    ],
)
def test_normalise_thumbprint(given: str, expected: str | None) -> None:
    assert normalise_thumbprint(given) == expected


def test_source_config_repr_does_not_contain_the_secret() -> None:
    for config in (
        _service_fabric("https://10.0.0.4:2377/t"),
        run({"IDENTITY_ENDPOINT": "http://localhost:1/t", "IDENTITY_HEADER": HEADER_SECRET}),
        run({"MSI_ENDPOINT": "http://localhost:1/t", "MSI_SECRET": MSI_SECRET_VALUE}),
    ):
        assert config.secret in (HEADER_SECRET, MSI_SECRET_VALUE)
        assert config.secret not in repr(config)
        assert config.secret not in str(config)
        assert config.secrets == (config.secret,)


def test_secrets_is_empty_without_a_secret() -> None:
    assert run({}).secrets == ()


# --- section 1 at its edges --------------------------------------------------------------------------------------


def _arc_windows(**environ: str) -> SourceConfig:
    return detect(
        {
            "IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t",
            "IMDS_ENDPOINT": "http://127.0.0.1:40342",
            **environ,
        },
        platform="win32",
        path_exists=lambda _: False,
    )


@pytest.mark.parametrize(
    ("environ", "directory"),
    [
        ({}, "C:\\ProgramData\\AzureConnectedMachineAgent\\Tokens"),
        ({"PROGRAMDATA": "D:\\Data"}, "D:\\Data\\AzureConnectedMachineAgent\\Tokens"),
        ({"ProgramData": "D:\\Data\\"}, "D:\\Data\\AzureConnectedMachineAgent\\Tokens"),
        ({"ProgramData": "\\\\server\\share"}, "\\\\server\\share\\AzureConnectedMachineAgent\\Tokens"),
    ],
)
def test_arc_key_directory_on_windows_is_under_program_data(environ: dict[str, str], directory: str) -> None:
    assert _arc_windows(**environ).arc_key_directory == directory


def test_the_arc_key_directory_on_windows_keeps_the_program_data_path_as_given() -> None:
    environ = {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t", "IMDS_ENDPOINT": "http://127.0.0.1:40342"}
    config = detect({**environ, "ProgramData": "D:\\DataX"}, platform="win32", path_exists=lambda _: False)
    assert config.arc_key_directory == "D:\\DataX\\AzureConnectedMachineAgent\\Tokens"


def test_arc_on_windows_is_found_by_himds_under_upper_case_program_files() -> None:
    himds = "D:\\Programs\\AzureConnectedMachineAgent\\himds.exe"
    config = detect({"PROGRAMFILES": "D:\\Programs\\"}, platform="win32", path_exists=lambda p: p == himds)
    assert (config.source, config.endpoint, config.platform) == (
        ManagedIdentitySource.AZURE_ARC,
        ARC_DEFAULT_ENDPOINT,
        "windows",
    )


def test_himds_on_windows_is_looked_for_under_program_files_as_given() -> None:
    looked: list[str] = []
    detect(
        {"ProgramFiles": "D:\\ProgramsX"}, platform="win32", path_exists=lambda p: looked.append(p) or False
    )
    assert looked == ["D:\\ProgramsX\\AzureConnectedMachineAgent\\himds.exe"]


def test_any_linux_platform_string_counts_as_linux_for_arc() -> None:
    config = detect({}, platform="linux2", path_exists=lambda p: p == "/opt/azcmagent/bin/himds")
    assert config.platform == "linux"


def test_the_default_imds_configuration_names_no_endpoint_variable() -> None:
    config = detect({}, platform="linux", path_exists=lambda _: False)
    assert config == SourceConfig(S.IMDS, "http://169.254.169.254" + IMDS_PATH, "")
    assert config.endpoint_variable == ""


@pytest.mark.parametrize(
    ("pod_host", "endpoint"),
    [
        ("http://127.0.0.1:8080/some/path/", "http://127.0.0.1:8080" + IMDS_PATH),
        ("localhost:8080/", "localhost:8080" + IMDS_PATH),  # no scheme: taken as it is, less the '/'
        ("http://[::1/", "http://[::1" + IMDS_PATH),  # not a URL: taken as it is, less the '/'
    ],
)
def test_pod_identity_replaces_only_the_origin_of_the_imds_endpoint(pod_host: str, endpoint: str) -> None:
    config = detect(
        {"AZURE_POD_IDENTITY_AUTHORITY_HOST": pod_host}, platform="linux", path_exists=lambda _: False
    )
    assert (config.source, config.endpoint, config.pod_identity) == (S.IMDS, endpoint, True)


@pytest.mark.parametrize(
    ("pod_host", "endpoint"),
    [
        ("http://[X/", "http://[X"),  # urlsplit refuses it: the value less its trailing slashes
        ("proxyX/", "proxyX"),  # no scheme: likewise
        ("http://127.0.0.1:1/some/path", "http://127.0.0.1:1"),
    ],
)
def test_the_pod_identity_host_replaces_only_the_imds_origin(pod_host: str, endpoint: str) -> None:
    config = _detect({"AZURE_POD_IDENTITY_AUTHORITY_HOST": pod_host}, opted_in=False)
    assert config.endpoint == endpoint + "/metadata/identity/oauth2/token"


def _workload_config(**environ: str) -> SourceConfig:
    return detect(
        {"AZURE_FEDERATED_TOKEN_FILE": "/t", "AZURE_TENANT_ID": "tenant", **environ},
        platform="linux",
        path_exists=lambda _: False,
    )


@pytest.mark.parametrize("tenant", [".", ".."])
def test_a_tenant_id_of_dots_only_is_refused(tenant: str) -> None:
    problem = _workload_config(AZURE_TENANT_ID=tenant).problem
    assert problem is not None and problem[0] == "invalid_tenant_id"


@pytest.mark.parametrize(
    ("authority", "accepted"),
    [
        ("http://localhost:8080", True),
        ("http://127.0.0.1:8080", True),
        ("http://169.254.1.1", False),  # link-local is this machine's IMDS, not an authority
        ("http://10.0.0.1", False),
        ("https://login.example", True),
    ],
)
def test_a_plain_http_authority_is_accepted_only_for_loopback(authority: str, accepted: bool) -> None:
    problem = _workload_config(AZURE_AUTHORITY_HOST=authority).problem
    assert (problem is None) is accepted
    if not accepted:
        assert problem is not None and problem[0] == "invalid_endpoint"


def test_an_authority_host_with_any_letter_is_accepted() -> None:
    config = _detect(_workload(AZURE_AUTHORITY_HOST="https://login.eXample.test"), opted_in=False)
    assert config.problem is None
    assert config.endpoint == "https://login.eXample.test" + AUTHORITY_PATH


def test_an_authority_ending_in_x_keeps_its_last_letter_and_loses_only_its_slash() -> None:
    config = run(_workload(AZURE_AUTHORITY_HOST="https://login.example.testX/"))

    assert config.problem is None
    assert config.endpoint == "https://login.example.testX/tenant-1/oauth2/v2.0/token"


@pytest.mark.parametrize("tenant", ["X", "XX", "x.X"])
def test_a_tenant_of_letters_x_is_a_tenant(tenant: str) -> None:
    config = run(_workload(AZURE_TENANT_ID=tenant))

    assert config.problem is None and config.tenant_id == tenant
    assert config.endpoint == f"https://login.example.test/{tenant}/oauth2/v2.0/token"


def test_identity_endpoint_alone_logs_that_it_is_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="msi_credential"):
        config = run({"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token"})

    assert config.source is ManagedIdentitySource.IMDS
    assert [record.getMessage() for record in caplog.records] == [
        "IDENTITY_ENDPOINT is set without IDENTITY_HEADER or IMDS_ENDPOINT; ignoring it"
    ]


# --- unusable configurations, in these words ---------------------------------------------------------------------


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
    assert run(environ).problem == problem


@pytest.mark.parametrize("enable_azure_proxy", [False, True])
def test_a_non_ascii_authority_is_refused_with_or_without_the_token_proxy_opt_in(
    enable_azure_proxy: bool,
) -> None:
    # the authority rules alone let a non-ASCII host through; the characters check after them must run in both
    # cases (with the opt-in and no identity binding, detection goes on with the authority)
    config = run(
        _workload(AZURE_AUTHORITY_HOST="https://login.ex\u00e4mple.test"),
        enable_azure_proxy=enable_azure_proxy,
    )

    assert config.problem == (
        "invalid_endpoint",
        "AZURE_AUTHORITY_HOST contains whitespace, control or non-ASCII characters, or a '#' fragment",
    )


def test_an_endpoint_with_a_port_but_no_host_is_refused() -> None:
    config = detect({"MSI_ENDPOINT": "http://:80/token"}, platform="linux", path_exists=lambda _: False)
    assert config.problem is not None and config.problem[0] == "invalid_endpoint"


def test_a_service_fabric_endpoint_with_a_bad_port_is_refused() -> None:
    config = detect(
        {
            "IDENTITY_ENDPOINT": "https://fabric:port/",
            "IDENTITY_HEADER": "h",
            "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
        },
        platform="linux",
        path_exists=lambda _: False,
    )
    assert config.source is S.SERVICE_FABRIC
    assert config.problem == (
        "invalid_endpoint",
        "IDENTITY_ENDPOINT must be an https:// URL with a host for Service Fabric",
    )


@pytest.mark.parametrize(
    ("environ", "source", "variable"),
    [
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "a\x01b"},
            S.APP_SERVICE,
            "IDENTITY_HEADER",
        ),
        (
            {"MSI_ENDPOINT": "http://127.0.0.1:1/t", "MSI_SECRET": "a\x7fb"},
            ManagedIdentitySource.MACHINE_LEARNING,
            "MSI_SECRET",
        ),
    ],
)
def test_a_secret_with_control_characters_makes_the_configuration_unusable_naming_the_variable(
    environ: dict[str, str], source: ManagedIdentitySource, variable: str
) -> None:
    config = detect(environ, platform="linux", path_exists=lambda _: False)
    assert config.source is source
    assert config.endpoint == "http://127.0.0.1:1/t"
    assert config.problem == ("invalid_secret", f"{variable} contains control or non-ASCII characters")


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("::1", True),  # an IPv6 host is recognised without its brackets
        ("a:b", False),
        ("999.0.0.1", False),
        ("127.0.0.01", False),
        ("127.0.0.1", True),
        ("169.254.169.254", True),
    ],
)
def test_which_hosts_are_this_machine(host: str, local: bool) -> None:
    assert is_local_host(host) is local


_UNSAFE = "contains whitespace, control or non-ASCII characters, or a '#' fragment"


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t#x"}, "MSI_ENDPOINT"),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t#x", "IMDS_ENDPOINT": "http://127.0.0.1:40342"},
            "IDENTITY_ENDPOINT",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/t", "IMDS_ENDPOINT": "http://127.0.0.1:40342#x"},
            "IMDS_ENDPOINT",
        ),
    ],
)
def test_an_endpoint_variable_with_a_fragment_makes_the_configuration_unusable_naming_it(
    environ: dict[str, str], variable: str
) -> None:
    config = detect(environ, platform="linux", path_exists=lambda _: False)
    assert config.problem == ("invalid_endpoint", f"{variable} {_UNSAFE}")


def test_imds_endpoint_is_checked_only_for_arc_that_uses_it() -> None:
    environ = {
        "IDENTITY_ENDPOINT": "http://127.0.0.1:1/t",
        "IDENTITY_HEADER": "h",
        "IMDS_ENDPOINT": "http://x#y",
    }
    config = detect(environ, platform="linux", path_exists=lambda _: False)
    assert (config.source, config.problem) == (S.APP_SERVICE, None)


# --- the variables that name URLs --------------------------------------------------------------------------------


def test_arc_through_identity_endpoint_checks_imds_endpoint_too() -> None:
    environ = {"IDENTITY_ENDPOINT": "http://127.0.0.1:40342/token", "IMDS_ENDPOINT": "http://127.0.0.1:1/x y"}
    config = _detect(environ, opted_in=False)
    assert config.source is ManagedIdentitySource.AZURE_ARC
    assert config.problem is not None
    assert config.problem[0] == "invalid_endpoint" and config.problem[1].startswith("IMDS_ENDPOINT ")
    assert _endpoint_variables(
        _detect({**environ, "IMDS_ENDPOINT": "http://127.0.0.1:1"}, opted_in=False)
    ) == (
        "IDENTITY_ENDPOINT",
        "IMDS_ENDPOINT",
    )


def test_arc_found_by_its_agent_checks_no_variable() -> None:
    config = _detect({"IMDS_ENDPOINT": "http://x#y"}, opted_in=False, himds=True)
    assert config.source is ManagedIdentitySource.AZURE_ARC and config.problem is None
    assert _endpoint_variables(config) == ()


def test_the_endpoint_variables_are_the_detected_sources_own() -> None:
    assert _endpoint_variables(_proxied()) == ("AZURE_KUBERNETES_TOKEN_PROXY",)
    assert _endpoint_variables(_detect(_workload(), opted_in=False)) == ("AZURE_AUTHORITY_HOST",)
    app_service = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "h"}
    assert _endpoint_variables(_detect(app_service, opted_in=False)) == ("IDENTITY_ENDPOINT",)
    assert _endpoint_variables(_detect({}, opted_in=False)) == ()


def test_the_identity_endpoint_is_named_when_it_has_a_fragment() -> None:
    environ = {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t#x", "IDENTITY_HEADER": "h"}
    assert _detect(environ, opted_in=False).problem == (
        "invalid_endpoint",
        "IDENTITY_ENDPOINT contains whitespace, control or non-ASCII characters, or a '#' fragment",
    )


# --- detection_reason --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "himds", "reason"),
    [
        (
            {
                "IDENTITY_ENDPOINT": "https://127.0.0.1:2377/t",
                "IDENTITY_HEADER": "h",
                "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
            },
            False,
            "IDENTITY_ENDPOINT, IDENTITY_HEADER and IDENTITY_SERVER_THUMBPRINT are set",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IDENTITY_HEADER": "h"},
            False,
            "IDENTITY_ENDPOINT and IDENTITY_HEADER are set",
        ),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/t", "IMDS_ENDPOINT": "http://127.0.0.1:2"},
            False,
            "IDENTITY_ENDPOINT and IMDS_ENDPOINT are set",
        ),
        ({}, True, "the Azure Connected Machine agent (himds) is installed"),
        (
            {"MSI_ENDPOINT": "http://127.0.0.1:1/t", "MSI_SECRET": "s"},
            False,
            "MSI_ENDPOINT and MSI_SECRET are set",
        ),
        ({"MSI_ENDPOINT": "http://127.0.0.1:1/t"}, False, "MSI_ENDPOINT is set without MSI_SECRET"),
        (_workload(), False, "AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID are set"),
        (
            {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://127.0.0.1:1"},
            False,
            "no other source's variables; AZURE_POD_IDENTITY_AUTHORITY_HOST replaces the IMDS address",
        ),
        ({}, False, "no other source's variables are set (the default: Azure VMs, AKS, Container Instances)"),
    ],
)
def test_the_detection_reason_names_the_rule_that_matched(
    environ: dict[str, str], himds: bool, reason: str
) -> None:
    assert detection_reason(_detect(environ, opted_in=False, himds=himds)) == reason


def test_the_detection_reason_of_a_proxied_workload_identity_is_workload_identitys() -> None:
    assert detection_reason(_proxied()) == "AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID are set"


# --- the AKS token proxy: accepted settings ----------------------------------------------------------------------


def test_the_proxy_replaces_the_authority_keeping_the_token_request_path() -> None:
    config = _proxied()
    assert config.problem is None
    assert config.source is WORKLOAD
    assert config.endpoint == PROXY + AUTHORITY_PATH
    assert config.endpoint_variable == "AZURE_KUBERNETES_TOKEN_PROXY"
    assert config.token_proxy == TokenProxy(PROXY, ca_file=None, ca_data=None, server_name=None)
    # everything else workload identity needs is kept
    assert (config.tenant_id, config.client_id, config.token_file) == (
        TENANT,
        "client-1",
        "/var/run/secrets/token",
    )


@pytest.mark.parametrize(
    ("proxy", "endpoint"),
    [
        ("https://127.0.0.1:8443", "https://127.0.0.1:8443" + AUTHORITY_PATH),
        ("https://127.0.0.1:8443/", "https://127.0.0.1:8443" + AUTHORITY_PATH),
        ("https://127.0.0.1:8443/proxy/", "https://127.0.0.1:8443/proxy" + AUTHORITY_PATH),
        ("https://127.0.0.1:8443/a/b//", "https://127.0.0.1:8443/a/b" + AUTHORITY_PATH),
        ("HTTPS://Proxy.Example.test", "https://Proxy.Example.test" + AUTHORITY_PATH),
        ("  https://proxy.example.test/p  ", "https://proxy.example.test/p" + AUTHORITY_PATH),
    ],
)
def test_the_proxy_path_and_the_token_path_are_joined_by_exactly_one_slash(proxy: str, endpoint: str) -> None:
    config = _detect(_workload(AZURE_KUBERNETES_TOKEN_PROXY=proxy))
    assert config.problem is None
    assert config.endpoint == endpoint
    assert config.token_proxy is not None and config.token_proxy.url == proxy.strip()


@pytest.mark.parametrize(
    ("proxy", "tenant", "endpoint"),
    [
        ("https://h/a\\b", TENANT, None),  # a backslash anywhere is refused
        ("https://h/pX", TENANT, "https://h/pX" + AUTHORITY_PATH),
        ("https://h/p", "Xtenant", "https://h/p/Xtenant/oauth2/v2.0/token"),
    ],
)
def test_the_proxy_and_token_paths_are_kept_character_for_character(
    proxy: str, tenant: str, endpoint: Optional[str]
) -> None:
    config = _detect(_workload(AZURE_KUBERNETES_TOKEN_PROXY=proxy, AZURE_TENANT_ID=tenant))
    if endpoint is None:
        assert config.problem is not None and config.problem[0] == "invalid_token_proxy"
    else:
        assert config.problem is None and config.endpoint == endpoint


def test_the_ca_file_and_server_name_are_kept_as_given_for_every_request(tmp_path: Path) -> None:
    ca_file = str(tmp_path / "ca.pem")  # read per request by the transport, not at detection
    config = _proxied(
        AZURE_KUBERNETES_CA_FILE=f" {ca_file} ", AZURE_KUBERNETES_SNI_NAME="proxy.cluster.local"
    )
    assert config.problem is None
    assert config.token_proxy == TokenProxy(PROXY, ca_file=ca_file, server_name="proxy.cluster.local")


def test_usable_ca_data_is_kept_on_the_token_proxy(ca_pem: str) -> None:
    config = _proxied(AZURE_KUBERNETES_CA_DATA=ca_pem)
    assert config.problem is None
    assert config.token_proxy is not None
    assert config.token_proxy.ca_data == ca_pem.strip()
    assert config.token_proxy.ca_file is None


def test_the_ca_data_is_not_in_the_repr_of_the_token_proxy(ca_pem: str) -> None:
    config = _proxied(AZURE_KUBERNETES_CA_DATA=ca_pem)
    assert "BEGIN CERTIFICATE" not in repr(config)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "proxy",
        "proxy.cluster.local",
        "proxy.cluster.local.",
        "a-b.c-d",
        "0a.9z",
        "x" * 63,
        ".".join(["x" * 63] * 3) + "." + "x" * 61,  # 253 characters
    ],
)
def test_a_dns_name_is_accepted_as_the_server_name(name: str) -> None:
    config = _proxied(AZURE_KUBERNETES_SNI_NAME=name)
    assert config.problem is None
    # a fully qualified name's one trailing dot is dropped: the same name on both faces' TLS stacks
    expected = name[:-1] if name.endswith(".") else name
    assert config.token_proxy is not None and config.token_proxy.server_name == expected


# --- the AKS token proxy: when it applies ------------------------------------------------------------------------


def test_detect_ignores_the_proxy_variables_unless_asked() -> None:
    config = detect(
        _workload(AZURE_KUBERNETES_TOKEN_PROXY=PROXY), platform="linux", path_exists=lambda _: False
    )
    assert config.token_proxy is None


def test_without_the_opt_in_the_proxy_variables_are_ignored_even_when_invalid() -> None:
    environ = _workload(AZURE_KUBERNETES_TOKEN_PROXY="http://bad", AZURE_KUBERNETES_CA_DATA="x")
    config = _detect(environ, opted_in=False)
    assert config.problem is None
    assert config.token_proxy is None
    assert config.endpoint == "https://login.example.test" + AUTHORITY_PATH
    assert config.endpoint_variable == "AZURE_AUTHORITY_HOST"


def test_opted_in_without_any_proxy_variable_detects_as_without_the_opt_in() -> None:
    assert _detect(_workload()) == _detect(_workload(), opted_in=False)


def test_opted_in_without_any_proxy_variable_goes_to_the_authority(emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    config = detect(
        dict(emulator.environ), platform="linux", path_exists=lambda p: False, enable_azure_proxy=True
    )
    assert config.token_proxy is None and config.problem is None
    assert config.endpoint == emulator.url


def test_blank_proxy_variables_count_as_unset() -> None:
    blank = {name: "  " for name in TOKEN_PROXY_VARIABLES}
    assert _detect(_workload(**blank)) == _detect(_workload(), opted_in=False)


@pytest.mark.parametrize(
    "environ",
    [
        {"IDENTITY_ENDPOINT": "http://127.0.0.1:1/token", "IDENTITY_HEADER": "h"},
        {"MSI_ENDPOINT": "http://127.0.0.1:1/token"},
        {},
    ],
)
def test_the_proxy_is_only_for_workload_identity(environ: dict[str, str]) -> None:
    environ = {
        **environ,
        "AZURE_KUBERNETES_TOKEN_PROXY": "http://bad",
        "AZURE_KUBERNETES_SNI_NAME": "bad name",
    }
    config = _detect(environ)
    assert config.source is not WORKLOAD
    assert config.problem is None and config.token_proxy is None


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


def test_a_workload_identity_problem_is_reported_before_the_proxy_is_looked_at() -> None:
    config = _detect(_workload(AZURE_TENANT_ID="bad/tenant", AZURE_KUBERNETES_TOKEN_PROXY="http://bad"))
    assert config.problem is not None and config.problem[0] == "invalid_tenant_id"
    assert config.token_proxy is None


# --- the AKS token proxy: refusals -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (
            {"AZURE_KUBERNETES_CA_FILE": "/ca.pem"},
            "AZURE_KUBERNETES_CA_FILE is set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {"AZURE_KUBERNETES_CA_DATA": "x"},
            "AZURE_KUBERNETES_CA_DATA is set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {"AZURE_KUBERNETES_SNI_NAME": "proxy"},
            "AZURE_KUBERNETES_SNI_NAME is set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {"AZURE_KUBERNETES_CA_FILE": "/ca.pem", "AZURE_KUBERNETES_SNI_NAME": "proxy"},
            "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_SNI_NAME are set without AZURE_KUBERNETES_TOKEN_PROXY",
        ),
        (
            {
                "AZURE_KUBERNETES_SNI_NAME": "proxy",
                "AZURE_KUBERNETES_CA_DATA": "x",
                "AZURE_KUBERNETES_CA_FILE": "/ca.pem",
            },
            "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_CA_DATA and AZURE_KUBERNETES_SNI_NAME are set without "
            "AZURE_KUBERNETES_TOKEN_PROXY",
        ),
    ],
)
def test_proxy_settings_without_the_proxy_are_refused_naming_them(
    given: dict[str, str], message: str
) -> None:
    config = _detect(_workload(**given))
    assert config.problem == ("invalid_token_proxy", message)
    assert config.token_proxy is None


BAD_PROXY_URLS = [
    "http://127.0.0.1:1/proxy",
    "ftp://127.0.0.1:1/",
    "127.0.0.1:1",
    "//127.0.0.1:1/proxy",
    "https:///no-host",
    "https://:8443/",
    "https://user:pass@127.0.0.1:1/proxy",
    "https://user@127.0.0.1:1",
    "https://@127.0.0.1:1",
    "https://127.0.0.1:1/proxy?x=1",
    "https://127.0.0.1:1/proxy?",
    "https://127.0.0.1:1/proxy#fragment",
    "https://127.0.0.1:1/proxy#",
    "https://127.0.0.1:1\\proxy",
    "https://127.0.0.1:99999/",
    "https://127.0.0.1:port/",
    "https://[::1/",
    "https://127.0.0.1:1/pro xy",
    "https://127.0.0.1:1/pro\txy",
    "https://127.0.0.1:1/pr\u00f6xy",
]


@pytest.mark.parametrize("url", BAD_PROXY_URLS)
def test_a_proxy_url_that_is_not_plain_https_is_refused_with_the_rule(url: str) -> None:
    config = _proxied(AZURE_KUBERNETES_TOKEN_PROXY=url)
    assert config.problem == (
        "invalid_token_proxy",
        "AZURE_KUBERNETES_TOKEN_PROXY must be an https:// URL with a host and no user info, query or fragment",
    )
    assert config.token_proxy is None
    assert config.endpoint == "https://login.example.test" + AUTHORITY_PATH


@pytest.mark.parametrize("url", BAD_PROXY_URLS)
def test_the_proxy_base_of_a_bad_url_is_none(url: str) -> None:
    assert _token_proxy_base(url) is None


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("https://h", "https://h"),
        ("https://h/", "https://h"),
        ("https://h:1/a/", "https://h:1/a"),
        ("https://[::1]:8443/p", "https://[::1]:8443/p"),
        ("hTTps://h/p", "https://h/p"),
    ],
)
def test_the_proxy_base_is_scheme_netloc_and_path_without_a_trailing_slash(url: str, base: str) -> None:
    assert _token_proxy_base(url) == base


def test_both_ca_variables_are_refused_saying_to_set_at_most_one(ca_pem: str) -> None:
    config = _proxied(AZURE_KUBERNETES_CA_FILE="/ca.pem", AZURE_KUBERNETES_CA_DATA=ca_pem)
    assert config.problem == (
        "invalid_token_proxy_ca",
        "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_CA_DATA are both set; set at most one",
    )
    assert config.token_proxy is None


def test_the_url_is_checked_before_the_ca_variables(ca_pem: str) -> None:
    config = _proxied(
        AZURE_KUBERNETES_TOKEN_PROXY="http://bad",
        AZURE_KUBERNETES_CA_FILE="/ca.pem",
        AZURE_KUBERNETES_CA_DATA="x",
    )
    assert config.problem is not None and config.problem[0] == "invalid_token_proxy"


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ("-", "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
        ("not a certificate", "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"),
        (
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "its PEM certificates do not parse",
        ),
        (
            "-----BEGIN CERTIFICATE-----\nQUJDRA==\n-----END CERTIFICATE-----",
            "its PEM certificates do not parse",
        ),
    ],
)
def test_unusable_ca_data_is_refused_saying_why(data: str, why: str) -> None:
    assert ca_problem(data) == why
    config = _proxied(AZURE_KUBERNETES_CA_DATA=data)
    assert config.problem == ("invalid_token_proxy_ca", f"AZURE_KUBERNETES_CA_DATA is not usable: {why}")
    assert config.token_proxy is None


@pytest.mark.parametrize(
    "hostile",
    [
        "-----BEGIN CERTIFICATE-----" + " " * 20_000,  # took 8 s under the old regular expression
        "-----BEGIN CERTIFICATE-----\n" * 4_000 + "-----END CERTIFICATE-----",
        ("-----BEGIN CERTIFICATE-----\nAA!A " + "-----END CERTIFICATE-----") * 2_000,
    ],
)
def test_ca_data_check_is_linear_in_its_size(hostile: str) -> None:
    class CountedReads(str):
        reads = 0

        def __getitem__(self, key: Any) -> str:
            CountedReads.reads += 1
            return str.__getitem__(self, key)

        def find(self, *args: Any) -> int:
            CountedReads.reads += 1
            return str.find(self, *args)

        def rfind(self, *args: Any) -> int:
            CountedReads.reads += 1
            return str.rfind(self, *args)

    assert ca_problem(CountedReads(hostile)) == "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
    # a few searches and slices per END marker, each over text no other one covers: no regular expression
    assert 0 < CountedReads.reads <= 4 * hostile.count("-----END") + 2


def test_a_pem_bundle_of_real_certificates_has_no_ca_problem(ca_pem: str) -> None:
    assert ca_problem(ca_pem) is None
    assert ca_problem(ca_pem + trustme.CA().cert_pem.bytes().decode("ascii")) is None
    assert ca_problem("comment before\n" + ca_pem) is None


NO_CERTIFICATE = "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
DAMAGED = "-----BEGIN CERTIFICATE-----\nAA!A\n-----END CERTIFICATE-----\n"
TRUNCATED = "-----BEGIN CERTIFICATE-----\nAAAA\n"


# change: an END line is paired with another BEGIN line than the last one before it (the first one, or one after it),
# or the first or every later END line with the text's last one; a BEGIN line at the text's second character is
# missed, an END line without any BEGIN is taken, a BEGIN line whose first dashes are the end of the END line before
# it is taken, or the shortest body (a newline and one character) is refused
@pytest.mark.parametrize(
    ("text", "found"),
    [
        pytest.param("{ca}" + DAMAGED, True, id="a-certificate-then-a-damaged-one"),
        pytest.param(DAMAGED + "{ca}" + DAMAGED, True, id="between-damaged-ones"),
        pytest.param("{ca}" + TRUNCATED, True, id="then-a-truncated-one"),
        pytest.param(TRUNCATED + "{ca}", True, id="after-a-truncated-one"),
        pytest.param("\n{ca}", True, id="after-one-character"),
        pytest.param("-----BEGIN CERTIFICATE-----\nA-----END CERTIFICATE-----", True, id="the-shortest-body"),
        pytest.param("x" * 26 + "\nAAAA\n-----END CERTIFICATE-----", False, id="an-end-line-alone"),
        pytest.param(
            DAMAGED.rstrip("\n") + "BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            False,
            id="a-begin-line-sharing-the-dashes-of-an-end-line",
        ),
    ],
)
def test_ca_data_has_a_certificate_where_an_end_line_closes_the_last_begin_line_before_it(
    ca_pem: str, text: str, found: bool
) -> None:
    assert (ca_problem(text.replace("{ca}", ca_pem)) != NO_CERTIFICATE) is found


@pytest.mark.parametrize(
    "name",
    [
        "bad name",
        "a/b",
        "-proxy",
        "proxy-",
        "a..b",
        ".proxy",
        "pr_oxy",
        "x" * 64,
        ".".join(["x" * 63] * 3) + "." + "x" * 62,  # 254 characters
        "pröxy",
    ],
)
def test_a_server_name_that_is_not_a_dns_name_is_refused(name: str) -> None:
    config = _proxied(AZURE_KUBERNETES_SNI_NAME=name)
    assert (config.problem, config.token_proxy) == (
        (
            "invalid_token_proxy_sni",
            "AZURE_KUBERNETES_SNI_NAME is not a DNS name (letters, digits, '-' and '.')",
        ),
        None,
    )


def test_the_ca_is_checked_before_the_server_name() -> None:
    config = _proxied(AZURE_KUBERNETES_CA_DATA="x", AZURE_KUBERNETES_SNI_NAME="bad name")
    assert config.problem is not None and config.problem[0] == "invalid_token_proxy_ca"


# --- through the credential: which source it detects -------------------------------------------------------------


def test_other_sources_win_over_workload_identity(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    cloud_shell = emulator_factory("cloud_shell")
    credential = face.credential(emulator, _environ={**emulator.environ, **cloud_shell.environ})

    assert credential.source is ManagedIdentitySource.CLOUD_SHELL
    credential.get_token(SCOPE)
    assert emulator.requests == [] and len(cloud_shell.requests) == 1


def test_arc_is_detected_by_the_himds_file(face: Any) -> None:
    credential = face.credential(_environ={}, _path_exists=lambda path: path == "/opt/azcmagent/bin/himds")

    assert credential.source is ManagedIdentitySource.AZURE_ARC


# --- through the credential: endpoints refused before any socket -------------------------------------------------


capturing_server = support.capturing_server  # the fixture


def _refusal(face: Any, environ: dict[str, str], error_code: str) -> ManagedIdentityError:
    """The error a credential of ``environ`` raises at its first call, which must be ``error_code``."""
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == error_code
    return caught.value


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


# --- through the credential: secrets refused before any socket ---------------------------------------------------


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
