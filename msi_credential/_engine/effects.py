"""What the engine asks its driver to do, and what the driver hands back. Plain values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Optional, Union

from .record import Record, field

MAX_BODY_BYTES = 1024 * 1024
MAX_KEY_FILE_BYTES = 4096


class Request(Record):
    """One HTTP request to a managed identity endpoint. Header values may be secrets: not in repr."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    form: Optional[Mapping[str, str]] = field(default=None, repr=False)
    connect_timeout: float = 2.0
    read_timeout: float = 10.0
    # Service Fabric: the lower-case hex SHA-1 the server's certificate must have before a byte is sent.
    pin_sha1: Optional[str] = None
    # Only workload identity may go through a proxy (docs/protocols.md section 9).
    use_proxies: bool = False
    # AKS token proxy (workload identity with enable_azure_proxy=True): over a connection of the driver's own, no
    # proxies, the server's certificate checked against ``tls_ca`` (PEM; None: the system CAs) for the name
    # ``tls_server_name`` (sent as SNI; None: the URL's host).
    token_proxy: bool = False
    tls_ca: Optional[str] = field(default=None, repr=False)
    tls_server_name: Optional[str] = None
    # Seconds this attempt may take in all (connect, headers, a slow body): what is left of the call's deadline.
    budget: float = 120.0


class Response(Record):
    """An HTTP answer. ``headers`` keys are lower-case; ``body`` holds at most MAX_BODY_BYTES + 1 bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes = field(repr=False)

    @property
    def too_large(self) -> bool:
        return len(self.body) > MAX_BODY_BYTES


FailureKind = Literal["connect", "connect_timeout", "read", "read_timeout", "pin_mismatch"]


class TransportFailure(Record):
    """No usable HTTP answer. ``kind`` tells a connect-phase failure (nothing sent) from one after sending."""

    kind: FailureKind
    detail: str


class Send(Record):
    request: Request


class Sleep(Record):
    seconds: float


class ReadKeyFile(Record):
    """Azure Arc: stat (not following links), check, then read at most MAX_KEY_FILE_BYTES + 1 bytes."""

    path: str


class KeyFileResult(Record):
    content: Optional[str] = field(default=None, repr=False)
    # on failure: (error_code, safe message)
    error: Optional[tuple[str, str]] = None


class ReadAssertion(Record):
    """Workload identity: read the federated token file (it rotates, so it is read for every request)."""

    path: str


class ReadProxyCA(Record):
    """AKS token proxy: read AZURE_KUBERNETES_CA_FILE (the cluster rotates it). Empty content is not an error
    here: the engine keeps the CA it had."""

    path: str


class MachineEntry(Record):
    """A token as the machine cache stores it (``refresh_on`` / ``mandatory_at`` are the cache's windows)."""

    token: str = field(repr=False)
    expires_on: int
    refresh_on: float
    mandatory_at: float
    token_type: str = "Bearer"
    info_refresh_on: Optional[int] = None


class MachineLookup(Record):
    """Machine cache: the entry ``name`` in ``directory`` if it is fresh at ``now``; else take the entry's lock,
    waiting at most ``wait`` seconds for a process that holds it, and read again. The driver keeps the lock until
    the flow ends (a process that dies releases it: the kernel drops its locks). ``throttle``: the name of the
    endpoint's throttle note (MachineThrottle), whose time comes back as ``MachineFound.throttled_until``."""

    directory: str
    name: str
    now: float
    wait: float
    throttle: Optional[str] = None


class MachineFound(Record):
    entry: Optional[MachineEntry] = None
    locked: bool = False
    throttled_until: float = 0.0


class MachineThrottle(Record):
    """Machine cache: the endpoint asked (429 Retry-After) not to be asked before ``until``; note it in ``name``
    for the other processes (kept when a later time is already noted)."""

    directory: str
    name: str
    until: float


class MachineStore(Record):
    """Machine cache: write the entry (temporary file, fsync, rename) for the other processes."""

    directory: str
    name: str
    entry: MachineEntry
    # the engine's clock at the store: entries that expired before it are swept from the directory
    now: Optional[float] = None


MachineEffect = Union[MachineLookup, MachineStore, MachineThrottle]
FileRead = Union[ReadKeyFile, ReadAssertion, ReadProxyCA]
Effect = Union[Send, Sleep, FileRead, MachineEffect]
# The effects a driver performs alike, by group: local file reads (_transport/files.py) and the machine cache
# (_transport/machine_cache.py). Each driver dispatches on these, so a new effect of a group is added here only.
FILE_READS = (ReadKeyFile, ReadAssertion, ReadProxyCA)
MACHINE_EFFECTS = (MachineLookup, MachineStore, MachineThrottle)
EffectResult = Union[Response, TransportFailure, KeyFileResult, MachineFound, None]
