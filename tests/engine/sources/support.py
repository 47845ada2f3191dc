"""What the sources' tests share: each source's configuration and a ``build`` for its request (the specs' pure
``build`` functions), each source's environment for the scripted driver (tests/engine/scripted.py), the error checker
of the scripted tests, and ``changed`` for an environment with some variables changed or removed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from msi_credential._engine.detection import SourceConfig
from msi_credential._engine.effects import KeyFileResult, Request
from msi_credential._engine.flow import Engine
from msi_credential._engine.identity import Identity, SelectorKind
from msi_credential._engine.record import replace
from msi_credential._engine.sources import SPECS, RequestParts
from msi_credential._source import ManagedIdentitySource as S

from ..scripted import APP_SERVICE, ARC, IMDS, Clock, engine
from ..scripted import failure as failure

RESOURCE = "https://storage.azure.com"

# --- a source's request, built from its configuration (docs/protocols.md sections 2, 6, 8 and 10) ------------------

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


def wi_parts(**fields: Any) -> RequestParts:
    return RequestParts(
        resource=RESOURCE, connect_timeout=2.0, read_timeout=10.0, client_assertion=ASSERTION, **fields
    )


# --- each source's environment for the scripted driver --------------------------------------------------------------

TOKEN_FILE = "/var/run/secrets/azure/tokens/azure-identity-token"
WORKLOAD = {
    "AZURE_FEDERATED_TOKEN_FILE": TOKEN_FILE,
    "AZURE_TENANT_ID": "tenant",
    "AZURE_CLIENT_ID": "client-a",
    "AZURE_AUTHORITY_HOST": "http://127.0.0.1:9",
}
SERVICE_FABRIC = {
    "IDENTITY_ENDPOINT": "https://127.0.0.1:9/metadata/identity/oauth2/token",
    "IDENTITY_HEADER": "sf-secret",
    "IDENTITY_SERVER_THUMBPRINT": "a" * 40,
}
MACHINE_LEARNING = {"MSI_ENDPOINT": "http://127.0.0.1:9/msi/token", "MSI_SECRET": "ml-secret"}
CLOUD_SHELL = {"MSI_ENDPOINT": "http://127.0.0.1:9/oauth2/token"}
SCRIPTED_ENVIRON = {
    S.APP_SERVICE: APP_SERVICE,
    S.AZURE_ARC: ARC,
    S.CLOUD_SHELL: CLOUD_SHELL,
    S.IMDS: IMDS,
    S.MACHINE_LEARNING: MACHINE_LEARNING,
    S.SERVICE_FABRIC: SERVICE_FABRIC,
    S.WORKLOAD_IDENTITY: WORKLOAD,
}
DIRECTORY = "/run/msi-credential-test-cache"
MACHINE = {"MSI_CREDENTIAL_MACHINE_CACHE": "1"}


def shared(environ: dict[str, str], clock: Clock, **kwargs: Any) -> Engine:
    """An engine with the machine cache on, in DIRECTORY."""
    return engine(dict(environ, **MACHINE), clock, _machine_cache_dir=DIRECTORY, **kwargs)


def assertion(content: str = "federated-assertion") -> KeyFileResult:
    """The federated token file's content, as the driver reads it for workload identity."""
    return KeyFileResult(content=content)


# --- environments -----------------------------------------------------------------------------------------------------


def changed(environ: Mapping[str, str], **changes: Optional[str]) -> dict[str, str]:
    """``environ`` (an emulator's variables, say) with ``changes``: a value sets a variable, None removes it."""
    merged = {**environ, **changes}
    return {name: value for name, value in merged.items() if value is not None}
