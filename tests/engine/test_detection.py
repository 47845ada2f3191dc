"""detect(): docs/protocols.md section 1 (first match wins) and the endpoint safety rules of sections 6 and 9."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from msi_credential._engine.detection import (
    ARC_DEFAULT_ENDPOINT,
    SourceConfig,
    detect,
    normalise_thumbprint,
)
from msi_credential._source import ManagedIdentitySource as S

THUMBPRINT = "0123456789abcdef0123456789abcdef01234567"
HEADER_SECRET = "header-secret-value-4f9c"
MSI_SECRET_VALUE = "msi-secret-value-7d21"
LINUX_HIMDS = "/opt/azcmagent/bin/himds"
IMDS_URL = "http://169.254.169.254/metadata/identity/oauth2/token"

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


def run(environ: dict[str, str], *, platform: str = "linux", path_exists: Callable[[str], bool] = no_files):
    return detect(environ, platform=platform, path_exists=path_exists)


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


def _service_fabric(endpoint: str, thumbprint: str = THUMBPRINT) -> SourceConfig:
    return run(
        {
            "IDENTITY_ENDPOINT": endpoint,
            "IDENTITY_HEADER": HEADER_SECRET,
            "IDENTITY_SERVER_THUMBPRINT": thumbprint,
        }
    )


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://10.0.0.4:2377/t",
        "https://sf.cluster.example:2377/t",
        "https://localhost/t",
        "https://[fd00::1]:1/t",
    ],
)
def test_service_fabric_accepts_any_https_host(endpoint: str) -> None:
    config = _service_fabric(endpoint)
    assert config.source is S.SERVICE_FABRIC
    assert config.problem is None


@pytest.mark.parametrize(
    "endpoint",
    [
        "http://10.0.0.4:2377/t",
        "http://localhost/t",
        "https:///t",
        "https://",
        "ftp://host/t",
        "https://u@host/t",
    ],
)
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
