"""Which hosting environment the credential is in, decided once from the environment and the himds file."""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Mapping
from typing import Callable, Optional
from urllib.parse import urlsplit

from .._source import ManagedIdentitySource
from .record import Record, field, replace

_LOGGER = logging.getLogger("msi_credential")

IMDS_DEFAULT_HOST = "http://169.254.169.254"
IMDS_PATH = "/metadata/identity/oauth2/token"
ARC_DEFAULT_ENDPOINT = "http://127.0.0.1:40342/metadata/identity/oauth2/token"
ARC_LINUX_HIMDS = "/opt/azcmagent/bin/himds"
ARC_LINUX_KEY_DIRECTORY = "/var/opt/azcmagent/tokens"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
# Every environment variable detection reads (docs/protocols.md section 1), in the order a person reads them.
VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "DEFAULT_IDENTITY_CLIENT_ID",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_AUTHORITY_HOST",
    # the azure-identity setting that pins DefaultAzureCredential to one credential (names_managed_identity)
    "AZURE_TOKEN_CREDENTIALS",
    # AKS identity bindings: read only when the credential opts in (enable_azure_proxy=True)
    "AZURE_KUBERNETES_TOKEN_PROXY",
    "AZURE_KUBERNETES_CA_FILE",
    "AZURE_KUBERNETES_CA_DATA",
    "AZURE_KUBERNETES_SNI_NAME",
)
TOKEN_PROXY_VARIABLES = VARIABLES[-4:]
_TENANT_PATTERN = re.compile(r"[A-Za-z0-9.-]+")
_URL_SAFE = re.compile(r"[!-\"$-~]*")  # printable ASCII without spaces and '#'
_HEADER_VALUE = re.compile(r"[ -~]+")  # printable ASCII: what every HTTP stack sends as it is


class TokenProxy(Record):
    """Where workload identity's token request goes instead of the authority, and how its TLS is checked."""

    url: str  # the proxy's base URL, as given (for messages)
    ca_file: Optional[str] = None
    ca_data: Optional[str] = field(default=None, repr=False)  # PEM: public, but long
    server_name: Optional[str] = None


class SourceConfig(Record):
    """The detected source and what the environment says about it. Secrets are excluded from repr."""

    source: ManagedIdentitySource
    endpoint: str
    endpoint_variable: str = ""
    secret: Optional[str] = field(default=None, repr=False)
    thumbprint: Optional[str] = None
    default_client_id: Optional[str] = None
    platform: str = "linux"
    arc_key_directory: str = ARC_LINUX_KEY_DIRECTORY
    pod_identity: bool = False
    tenant_id: Optional[str] = None
    client_id: Optional[str] = None
    token_file: Optional[str] = None
    # AKS identity bindings (enable_azure_proxy=True): the token request goes to this proxy, over TLS checked
    # against this CA (PEM text, or a file read for every request; neither: the system CAs) and this server name.
    token_proxy: Optional[TokenProxy] = None
    # Set when the configuration is unusable: raised at the first get_token, before any socket.
    problem: Optional[tuple[str, str]] = None

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.secret,) if self.secret else ()


def _get(environ: Mapping[str, str], name: str) -> Optional[str]:
    value = environ.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def detect(
    environ: Mapping[str, str],
    *,
    platform: str,
    path_exists: Callable[[str], bool],
    arc_key_directory: Optional[str] = None,
    enable_azure_proxy: bool = False,
) -> SourceConfig:
    """Apply docs/protocols.md section 1, first match wins. ``platform`` is ``sys.platform``; ``path_exists`` stats.

    ``enable_azure_proxy``: workload identity honours the AKS token proxy variables (section 10); without it they
    are ignored. A secret that could not go into a header (control characters) makes the configuration unusable.
    """
    config = _detect(environ, platform=platform, path_exists=path_exists, arc_key_directory=arc_key_directory)
    if config.problem is not None:
        return config
    if enable_azure_proxy and config.source is ManagedIdentitySource.WORKLOAD_IDENTITY:
        config = _with_token_proxy(config, environ)
        if config.problem is not None:
            return config
    for variable in _endpoint_variables(config):
        value = _get(environ, variable) or ""
        if not _URL_SAFE.fullmatch(value):
            # Each HTTP stack treats these differently (one refuses a tab, another sends it): refuse them all,
            # before any socket. A '#' would also cut the query off the request.
            return replace(
                config,
                problem=(
                    "invalid_endpoint",
                    f"{variable} contains whitespace, control or non-ASCII characters, or a '#' fragment",
                ),
            )
    if config.secret is not None and not _HEADER_VALUE.fullmatch(config.secret):
        variable = (
            "MSI_SECRET" if config.source is ManagedIdentitySource.MACHINE_LEARNING else "IDENTITY_HEADER"
        )
        return replace(
            config,
            problem=("invalid_secret", f"{variable} contains control or non-ASCII characters"),
        )
    return config


_SERVER_NAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"
_PEM_BODY = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def _with_token_proxy(config: SourceConfig, environ: Mapping[str, str]) -> SourceConfig:
    """docs/protocols.md section 10, AKS identity bindings: the endpoint becomes the proxy's URL with the token
    request's path appended, or the configuration is refused naming the variable."""
    proxy = _get(environ, "AZURE_KUBERNETES_TOKEN_PROXY")
    ca_file = _get(environ, "AZURE_KUBERNETES_CA_FILE")
    ca_data = _get(environ, "AZURE_KUBERNETES_CA_DATA")
    server_name = _get(environ, "AZURE_KUBERNETES_SNI_NAME")
    if proxy is None:
        given = [name for name in TOKEN_PROXY_VARIABLES[1:] if _get(environ, name) is not None]
        if not given:
            return config  # opted in, but this cluster has no identity binding: Entra as usual
        return replace(
            config,
            problem=(
                "invalid_token_proxy",
                f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} set without "
                "AZURE_KUBERNETES_TOKEN_PROXY",
            ),
        )
    base = _token_proxy_base(proxy)
    if base is None:
        return replace(
            config,
            problem=(
                "invalid_token_proxy",
                "AZURE_KUBERNETES_TOKEN_PROXY must be an https:// URL with a host and no user info, query or "
                "fragment",
            ),
        )
    if ca_file is not None and ca_data is not None:
        return replace(
            config,
            problem=(
                "invalid_token_proxy_ca",
                "AZURE_KUBERNETES_CA_FILE and AZURE_KUBERNETES_CA_DATA are both set; set at most one",
            ),
        )
    if ca_data is not None and ca_problem(ca_data) is not None:
        return replace(
            config,
            problem=(
                "invalid_token_proxy_ca",
                f"AZURE_KUBERNETES_CA_DATA is not usable: {ca_problem(ca_data)}",
            ),
        )
    if server_name is not None and not _SERVER_NAME.fullmatch(server_name):
        return replace(
            config,
            problem=(
                "invalid_token_proxy_sni",
                "AZURE_KUBERNETES_SNI_NAME is not a DNS name (letters, digits, '-' and '.')",
            ),
        )
    if server_name is not None and server_name.endswith("."):
        # a fully qualified name's root dot: TLS sends and certificates hold the name without it, and the two
        # drivers' TLS stacks would not agree on it
        server_name = server_name[:-1]
    # The token request keeps its own path, appended to the proxy's (an empty proxy path counts as '/').
    path = urlsplit(config.endpoint).path
    return replace(
        config,
        endpoint=base + "/" + path.lstrip("/"),
        endpoint_variable="AZURE_KUBERNETES_TOKEN_PROXY",
        token_proxy=TokenProxy(proxy, ca_file=ca_file, ca_data=ca_data, server_name=server_name),
    )


def _token_proxy_base(url: str) -> Optional[str]:
    """``https://host[:port][/path]`` without a trailing '/', or None when the URL breaks a rule."""
    if not _URL_SAFE.fullmatch(url) or "?" in url or "#" in url or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not parts.hostname or "@" in parts.netloc:
        return None
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


def _has_pem_certificate(pem: str) -> bool:
    """A BEGIN CERTIFICATE line, whitespace, base64 and whitespace, then END CERTIFICATE. In linear time: each
    END marker is paired only with the last BEGIN before it (an earlier one would enclose that BEGIN's dashes),
    so every character is looked at a bounded number of times, however the text is built (a regular expression
    took seconds on a BEGIN line followed by thousands of spaces)."""
    start = 0
    end = pem.find(_PEM_END)
    while end != -1:
        begin = pem.rfind(_PEM_BEGIN, start, end)
        if begin != -1:
            body = pem[begin + len(_PEM_BEGIN) : end]
            if len(body) > 1 and body[0].isspace() and all(c in _PEM_BODY or c.isspace() for c in body):
                return True
        start = end + len(_PEM_END)
        end = pem.find(_PEM_END, start)
    return False


def ca_problem(pem: str) -> Optional[str]:
    """Why this text is not a usable PEM CA bundle, or None. Parsing certificates is computation, not I/O."""
    if not _has_pem_certificate(pem):
        return "no PEM certificate (-----BEGIN CERTIFICATE-----) in it"
    import ssl

    try:
        ssl.create_default_context(cadata=pem)
    except (ssl.SSLError, ValueError):
        return "its PEM certificates do not parse"
    return None


def _endpoint_variables(config: SourceConfig) -> tuple[str, ...]:
    """The variables that name URLs for the detected source."""
    variables: tuple[str, ...] = (config.endpoint_variable,) if config.endpoint_variable else ()
    if config.source is ManagedIdentitySource.AZURE_ARC and config.endpoint_variable:
        variables += ("IMDS_ENDPOINT",)
    return variables


def _detect(
    environ: Mapping[str, str],
    *,
    platform: str,
    path_exists: Callable[[str], bool],
    arc_key_directory: Optional[str] = None,
) -> SourceConfig:
    """Apply docs/protocols.md section 1, first match wins. ``platform`` is ``sys.platform``; ``path_exists`` stats."""
    identity_endpoint = _get(environ, "IDENTITY_ENDPOINT")
    identity_header = _get(environ, "IDENTITY_HEADER")
    thumbprint = _get(environ, "IDENTITY_SERVER_THUMBPRINT")
    imds_endpoint = _get(environ, "IMDS_ENDPOINT")
    msi_endpoint = _get(environ, "MSI_ENDPOINT")
    msi_secret = _get(environ, "MSI_SECRET")
    windows = platform.startswith("win")
    key_directory = arc_key_directory or _arc_key_directory(environ, windows)
    os_name = "windows" if windows else ("linux" if platform.startswith("linux") else platform)

    if identity_endpoint and identity_header and thumbprint:
        return SourceConfig(
            ManagedIdentitySource.SERVICE_FABRIC,
            identity_endpoint,
            "IDENTITY_ENDPOINT",
            secret=identity_header,
            thumbprint=thumbprint,
            problem=_service_fabric_problem(identity_endpoint, thumbprint),
        )
    if identity_endpoint and identity_header:
        return _local(
            ManagedIdentitySource.APP_SERVICE,
            identity_endpoint,
            "IDENTITY_ENDPOINT",
            secret=identity_header,
        )
    if identity_endpoint and imds_endpoint:
        return _local(
            ManagedIdentitySource.AZURE_ARC,
            identity_endpoint,
            "IDENTITY_ENDPOINT",
            platform=os_name,
            arc_key_directory=key_directory,
        )
    if identity_endpoint:
        _LOGGER.warning("IDENTITY_ENDPOINT is set without IDENTITY_HEADER or IMDS_ENDPOINT; ignoring it")
    if msi_endpoint and msi_secret:
        return _local(
            ManagedIdentitySource.MACHINE_LEARNING,
            msi_endpoint,
            "MSI_ENDPOINT",
            secret=msi_secret,
            default_client_id=_get(environ, "DEFAULT_IDENTITY_CLIENT_ID"),
        )
    if msi_endpoint:
        return _local(ManagedIdentitySource.CLOUD_SHELL, msi_endpoint, "MSI_ENDPOINT")
    token_file = _get(environ, "AZURE_FEDERATED_TOKEN_FILE")
    tenant_id = _get(environ, "AZURE_TENANT_ID")
    if token_file and tenant_id:
        authority = _get(environ, "AZURE_AUTHORITY_HOST") or DEFAULT_AUTHORITY_HOST
        if "://" not in authority:
            authority = "https://" + authority
        authority = authority.rstrip("/")
        problem = None
        # "." and ".." match the pattern but would be path segments: refused too.
        if not _TENANT_PATTERN.fullmatch(tenant_id) or not tenant_id.strip("."):
            problem = (
                "invalid_tenant_id",
                "AZURE_TENANT_ID is not a valid tenant id (letters, digits, '.' and '-' only)",
            )
        else:
            problem = _authority_problem(authority)
        return SourceConfig(
            ManagedIdentitySource.WORKLOAD_IDENTITY,
            f"{authority}/{tenant_id}/oauth2/v2.0/token",
            "AZURE_AUTHORITY_HOST",
            tenant_id=tenant_id,
            client_id=_get(environ, "AZURE_CLIENT_ID"),
            token_file=token_file,
            problem=problem,
        )
    himds = _himds_path(environ, windows)
    if himds is not None and path_exists(himds):
        return SourceConfig(
            ManagedIdentitySource.AZURE_ARC,
            ARC_DEFAULT_ENDPOINT,
            "",
            platform=os_name,
            arc_key_directory=key_directory,
        )
    pod_host = _get(environ, "AZURE_POD_IDENTITY_AUTHORITY_HOST")
    if pod_host:
        return SourceConfig(
            ManagedIdentitySource.IMDS,
            _origin(pod_host) + IMDS_PATH,
            "AZURE_POD_IDENTITY_AUTHORITY_HOST",
            pod_identity=True,
            problem=_local_endpoint_problem(pod_host, "AZURE_POD_IDENTITY_AUTHORITY_HOST"),
        )
    return SourceConfig(ManagedIdentitySource.IMDS, IMDS_DEFAULT_HOST + IMDS_PATH, "")


def names_managed_identity(environ: Mapping[str, str]) -> bool:
    """Whether AZURE_TOKEN_CREDENTIALS names managed identity (``ManagedIdentityCredential``, in any letter case,
    spaces around it ignored, as azure-identity reads it): the application chose this credential, so IMDS is not
    probed even inside a chain (docs/protocols.md section 7). ``prod``, a chain of several, is not a choice."""
    return (environ.get("AZURE_TOKEN_CREDENTIALS") or "").strip().lower() == "managedidentitycredential"


def detection_reason(config: SourceConfig) -> str:
    """Why detection chose this source: the row of the table above that matched, for `msi-credential detect`."""
    reasons = {
        ManagedIdentitySource.SERVICE_FABRIC: "IDENTITY_ENDPOINT, IDENTITY_HEADER and IDENTITY_SERVER_THUMBPRINT are set",
        ManagedIdentitySource.APP_SERVICE: "IDENTITY_ENDPOINT and IDENTITY_HEADER are set",
        ManagedIdentitySource.MACHINE_LEARNING: "MSI_ENDPOINT and MSI_SECRET are set",
        ManagedIdentitySource.CLOUD_SHELL: "MSI_ENDPOINT is set without MSI_SECRET",
        ManagedIdentitySource.WORKLOAD_IDENTITY: "AZURE_FEDERATED_TOKEN_FILE and AZURE_TENANT_ID are set",
    }
    if config.source is ManagedIdentitySource.AZURE_ARC:
        if config.endpoint_variable:
            return "IDENTITY_ENDPOINT and IMDS_ENDPOINT are set"
        return "the Azure Connected Machine agent (himds) is installed"
    if config.source is ManagedIdentitySource.IMDS:
        if config.pod_identity:
            return "no other source's variables; AZURE_POD_IDENTITY_AUTHORITY_HOST replaces the IMDS address"
        return "no other source's variables are set (the default: Azure VMs, AKS, Container Instances)"
    return reasons[config.source]


def _origin(url: str) -> str:
    """Scheme, host and port of a URL: AZURE_POD_IDENTITY_AUTHORITY_HOST replaces only those."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.rstrip("/")
    if not parts.scheme or not parts.netloc:
        return url.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}"


def _local(
    source: ManagedIdentitySource,
    endpoint: str,
    variable: str,
    **fields: Optional[str],
) -> SourceConfig:
    return SourceConfig(
        source,
        endpoint,
        variable,
        problem=_local_endpoint_problem(endpoint, variable),
        **fields,  # type: ignore[arg-type]
    )


def _arc_key_directory(environ: Mapping[str, str], windows: bool) -> str:
    if not windows:
        return ARC_LINUX_KEY_DIRECTORY
    program_data = _get(environ, "ProgramData") or _get(environ, "PROGRAMDATA") or "C:\\ProgramData"
    return program_data.rstrip("\\") + "\\AzureConnectedMachineAgent\\Tokens"


def _himds_path(environ: Mapping[str, str], windows: bool) -> Optional[str]:
    if not windows:
        return ARC_LINUX_HIMDS
    program_files = _get(environ, "ProgramFiles") or _get(environ, "PROGRAMFILES")
    if program_files is None:
        return None
    return program_files.rstrip("\\") + "\\AzureConnectedMachineAgent\\himds.exe"


def _local_endpoint_problem(url: str, variable: str) -> Optional[tuple[str, str]]:
    """docs/protocols.md section 9: a secret may go over plain HTTP only to this machine (loopback or link-local)."""
    refusal = ("invalid_endpoint", f"{variable} must be an http(s) URL to a loopback or link-local host")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return refusal
    if parts.scheme not in ("http", "https") or not parts.netloc or host is None:
        return refusal
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        return refusal
    return None if is_local_host(host, parts.netloc) else refusal


def is_local_host(host: str, netloc: str = "") -> bool:
    """True for ``localhost``, a dotted quad in 127.0.0.0/8 or 169.254.0.0/16, or ``[::1]``."""
    if host.lower() == "localhost":
        return True
    if netloc.startswith("[") or ":" in host:
        try:
            return ipaddress.IPv6Address(host) == ipaddress.IPv6Address("::1")
        except ValueError:
            return False
    octets = host.split(".")
    if len(octets) != 4 or not all(o.isdigit() and len(o) <= 3 for o in octets):
        return False
    try:
        address = ipaddress.IPv4Address(host)
    except ValueError:
        return False
    return address.is_loopback or address in ipaddress.IPv4Network("169.254.0.0/16")


def _service_fabric_problem(endpoint: str, thumbprint: str) -> Optional[tuple[str, str]]:
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        return (
            "invalid_endpoint",
            "IDENTITY_ENDPOINT must be an https:// URL with a host for Service Fabric",
        )
    if normalise_thumbprint(thumbprint) is None:
        return (
            "invalid_thumbprint",
            "IDENTITY_SERVER_THUMBPRINT must be a SHA-1 thumbprint of 40 hexadecimal digits",
        )
    return None


def _authority_problem(authority: str) -> Optional[tuple[str, str]]:
    refusal = (
        "invalid_endpoint",
        "AZURE_AUTHORITY_HOST must be an https:// URL (or http:// to a loopback host)",
    )
    try:
        parts = urlsplit(authority)
        parts.port  # noqa: B018
    except ValueError:
        return refusal
    if not parts.hostname or "@" in parts.netloc or any(ch in authority for ch in "?# \t\\"):
        return refusal
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and is_local_host(parts.hostname, parts.netloc):
        address_ok = parts.hostname.lower() == "localhost" or not parts.hostname.startswith("169.254")
        return None if address_ok else refusal
    return refusal


def normalise_thumbprint(thumbprint: str) -> Optional[str]:
    """Lower-case hex SHA-1 without separators, or None if it is not one."""
    cleaned = "".join(ch for ch in thumbprint if not ch.isspace() and ch != ":").lower()
    if len(cleaned) != 40 or any(ch not in "0123456789abcdef" for ch in cleaned):
        return None
    return cleaned
