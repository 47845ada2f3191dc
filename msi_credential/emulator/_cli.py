"""``msi-credential emulate``: the emulator as a local stand-in for the managed identity endpoint of any Azure SDK."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import shlex
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any, Optional, TextIO, TypeVar

from msi_credential._source import ManagedIdentitySource

from ._wire import write_private

EXIT_OK = 0
EXIT_SETUP = 2  # bad arguments, a busy port, a missing extra or a place the emulator may not write

FORMATS = ("shell", "dotenv", "json")
_STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
_MAX_LATENCY = 600.0
_Number = TypeVar("_Number", int, float)

# What each trust variable does, printed above it (shell and dotenv forms).
_TRUST_COMMENTS = {
    "NODE_EXTRA_CA_CERTS": "Node.js (@azure/identity, @azure/msal-node): adds this run's CA to Node's built-in roots",
    "REQUESTS_CA_BUNDLE": "Python requests (azure-identity sync, msal): replaces certifi's roots, so it names a "
    "bundle of those roots plus this run's CA",
    "SSL_CERT_FILE": "OpenSSL's default CA file (Python ssl and aiohttp: azure-identity async; Go; .NET on Linux): "
    "the same bundle",
}


def add_arguments(emulate: argparse.ArgumentParser) -> None:
    """The options of ``msi-credential emulate``."""
    emulate.add_argument(
        "--source",
        choices=[source.value for source in ManagedIdentitySource],
        default=None,
        help="which endpoint to emulate (default: imds, or the scenario's source)",
    )
    emulate.add_argument("--port", type=_port, default=0, help="port to listen on (default: a free port)")
    emulate.add_argument(
        "--host", default="127.0.0.1", choices=["127.0.0.1", "::1", "localhost"], help="loopback address"
    )
    emulate.add_argument(
        "--identity",
        action="append",
        default=[],
        metavar="CLIENT_ID,OBJECT_ID[,RESOURCE_ID]",
        type=_identity,
        help="a user-assigned identity the emulator knows (repeatable)",
    )
    emulate.add_argument(
        "--client-id",
        metavar="ID",
        help="client id of the system-assigned identity (default: a new one each run); workload identity "
        "prints it as AZURE_CLIENT_ID, Machine Learning as DEFAULT_IDENTITY_CLIENT_ID",
    )
    emulate.add_argument(
        "--lifetime", type=_lifetime, default=3600, help="token lifetime in seconds (default 3600)"
    )
    emulate.add_argument(
        "--format",
        choices=FORMATS,
        default="shell",
        help="how to print the variables: shell (export lines with comments, the default), dotenv "
        "(NAME=value), or json (one line, for a test harness)",
    )
    emulate.add_argument(
        "--env-file",
        metavar="PATH",
        help="also write the variables to PATH in dotenv form: a new file, written once serving and removed at "
        "stop (an existing file is refused, never replaced)",
    )
    emulate.add_argument(
        "--fail",
        metavar="STATUS[,STATUS...]",
        type=_statuses,
        default=[],
        help="answer the next requests with these HTTP statuses in the source's error shape, in order, then "
        "serve normally (e.g. 503,503: two failures, then a token)",
    )
    emulate.add_argument(
        "--token-proxy",
        action="store_true",
        help="workload identity: play the AKS token proxy (identity bindings) over https with its own CA and a "
        "server name other than its address; prints AZURE_KUBERNETES_TOKEN_PROXY, AZURE_KUBERNETES_CA_FILE and "
        "AZURE_KUBERNETES_SNI_NAME (clients opt in, e.g. enable_azure_proxy=True)",
    )
    emulate.add_argument(
        "--scenario",
        metavar="NAME",
        choices=list(_scenario_names()),
        help="replay an incident (the catalogue is docs/testing.md): "
        + ", ".join(_scenario_names())
        + "; --fail and --latency apply on top",
    )
    emulate.add_argument(
        "--latency",
        metavar="SECONDS",
        type=_latency,
        default=0.0,
        help="wait this long before every answer (e.g. 2.5)",
    )


def _scenario_names() -> tuple[str, ...]:
    from ._scenarios import SCENARIOS

    return tuple(SCENARIOS)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535, not {value}")
    return value


def _seconds(text: str, kind: Callable[[str], _Number]) -> _Number:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


def _lifetime(text: str) -> int:
    value = _seconds(text, int)
    if not 1 <= value <= 7 * 24 * 3600:
        raise argparse.ArgumentTypeError("lifetime must be 1 second to 7 days")
    return value


def _identity(text: str) -> tuple[str, str, str]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3) or not all(parts):
        raise argparse.ArgumentTypeError("expected CLIENT_ID,OBJECT_ID[,RESOURCE_ID]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _statuses(text: str) -> list[int]:
    statuses: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or not 400 <= int(part) <= 599:
            raise argparse.ArgumentTypeError(f"expected HTTP statuses from 400 to 599, not {part!r}")
        statuses.append(int(part))
    return statuses


def _latency(text: str) -> float:
    value = _seconds(text, float)
    if not 0.0 <= value <= _MAX_LATENCY:  # also refuses nan
        raise argparse.ArgumentTypeError(f"latency must be 0 to {_MAX_LATENCY:g} seconds")
    return value


# ---------------------------------------------------------------------------------------------- running


def run(args: argparse.Namespace, out: TextIO, *, stop: Optional[threading.Event] = None) -> int:
    """Serve until SIGINT, SIGTERM or SIGHUP (or until ``stop`` is set), then remove every file written."""
    from . import ARC_KEY_DIRECTORY, Emulator, EmulatorSetupError, Fault, UserAssignedIdentity

    scenario = getattr(args, "scenario", None)
    if args.source is None:
        from ._scenarios import SCENARIOS

        args.source = SCENARIOS[scenario].default_source.value if scenario else "imds"
    source = ManagedIdentitySource(args.source)
    if scenario is not None:
        from ._scenarios import SCENARIOS

        sources = SCENARIOS[scenario].sources
        if sources and source not in sources:
            _error(f"scenario {scenario} is an incident of {', '.join(item.value for item in sources)}")
            return EXIT_SETUP
    token_proxy = bool(getattr(args, "token_proxy", False))
    if token_proxy and source is not ManagedIdentitySource.WORKLOAD_IDENTITY:
        _error("--token-proxy needs --source workload_identity")
        return EXIT_SETUP
    if args.env_file and os.path.lexists(args.env_file):
        _error(_env_file_exists(args.env_file))
        return EXIT_SETUP
    stop = stop or threading.Event()
    received: list[int] = []
    restore = _handle_stop_signals(stop, received)
    handler: Optional[logging.Handler] = None
    emulator_logger = logging.getLogger("msi_credential.emulator")
    previous_level = emulator_logger.level
    emulator: Optional[Emulator] = None
    env_file: Optional[tuple[int, int]] = None  # the file we created: (device, inode)
    try:
        emulator = Emulator(
            source,
            host=args.host,
            port=args.port,
            identities=[UserAssignedIdentity(*parts) for parts in args.identity],
            token_lifetime=args.lifetime,
            default_client_id=args.client_id,
            tls=True if source is ManagedIdentitySource.WORKLOAD_IDENTITY else None,
            arc_key_directory=ARC_KEY_DIRECTORY if source is ManagedIdentitySource.AZURE_ARC else None,
            token_proxy=token_proxy,
            scenario=scenario,
        )
        try:
            emulator.start()
        except EmulatorSetupError as error:
            _error(str(error))
            return EXIT_SETUP
        except OSError as error:
            where = f"{args.host}:{args.port}"
            if error.errno == errno.EADDRINUSE:
                _error(
                    f"cannot listen on {where}: the port is already in use (is another emulator running "
                    "there? stop it, or choose another --port)"
                )
            else:
                _error(f"cannot listen on {where}: {error.strerror or error}")
            return EXIT_SETUP
        if args.fail:
            emulator.script(*(Fault(status) for status in args.fail))
        emulator.delay = args.latency
        variables = {**emulator.environ, **emulator.trust_environ}
        if args.env_file:
            try:
                env_file = _write_env_file(args.env_file, variables)
            except FileExistsError:  # created since the check above
                _error(_env_file_exists(args.env_file))
                return EXIT_SETUP
        # Installed only once serving, and always removed again (level included): main() may run again in-process.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_PrintableFormatter("%(asctime)s %(message)s"))
        emulator_logger.addHandler(handler)
        emulator_logger.setLevel(logging.DEBUG)
        if args.format == "json":
            print(json.dumps(_document(emulator, args, variables), separators=(",", ":")), file=out)
        else:
            for line in _lines(emulator, args, variables):
                print(line, file=out)
        out.flush()
        wait_until_stopped(stop)
        name = signal.Signals(received[0]).name if received else "stop requested"
        print(
            f"# stopped ({name}); the files it wrote are removed",
            file=sys.stderr if args.format == "json" else out,
        )
        return EXIT_OK
    finally:
        try:
            if emulator is not None:
                emulator.stop()
            if env_file is not None:
                _remove_if_ours(args.env_file, env_file)
        finally:
            restore()
            if handler is not None:
                emulator_logger.removeHandler(handler)
            emulator_logger.setLevel(previous_level)


class _PrintableFormatter(logging.Formatter):
    """Log lines carry what clients sent (the request's method and path): terminal control characters in them are
    neutralised as the command's other outside text is (``msi_credential.cli.printable``)."""

    def format(self, record: logging.LogRecord) -> str:
        from msi_credential.cli import printable

        return "\n".join(printable(line) for line in super().format(record).split("\n"))


def wait_until_stopped(stop: threading.Event) -> None:
    """Block until ``stop`` is set (by a stop signal); short waits, so a signal's handler runs promptly."""
    while not stop.wait(0.25):
        pass


def _error(message: str) -> None:
    print(f"msi-credential emulate: error: {message}", file=sys.stderr)


def _handle_stop_signals(stop: threading.Event, received: list[int]) -> Any:
    """SIGINT, SIGTERM and SIGHUP set ``stop``. Set explicitly, not inherited: a shell starts a background job with
    SIGINT ignored, and the emulator must still stop on it. Returns what puts the previous handlers back."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def on_signal(signum: int, frame: Optional[FrameType]) -> None:
        received.append(signum)
        stop.set()

    previous = {number: signal.signal(number, on_signal) for number in _STOP_SIGNALS}

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def _env_file_exists(path: str) -> str:
    return (
        f"--env-file {path} already exists: the emulator writes only a new file (it removes it at stop), never "
        "one that was there; remove it or choose another path"
    )


def _write_env_file(path: str, variables: Mapping[str, str]) -> tuple[int, int]:
    """The variables in dotenv form, owner-readable only (they carry the endpoint's secret), in a new file at
    ``path``: complete when it appears (a hard link to a staging file), and never replacing a file that exists
    (FileExistsError). Returns the new file's (device, inode), so that stop removes that file and no other."""
    text = "".join(f"{name}={_dotenv_quote(value)}\n" for name, value in variables.items())
    descriptor, staging = tempfile.mkstemp(
        dir=os.path.dirname(os.path.abspath(path)), prefix=".msi-emulator-env-"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
        try:
            os.link(staging, path)  # fails if anything is at path: a link never replaces
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create the file exclusively instead
            write_private(path, text.encode("utf-8"))
        created = os.lstat(path)
        return created.st_dev, created.st_ino
    finally:
        with contextlib.suppress(OSError):
            os.remove(staging)


def _remove_if_ours(path: str, identity: tuple[int, int]) -> None:
    """Remove the file at ``path`` if it is still the one we created (not one put there since)."""
    with contextlib.suppress(OSError):
        status = os.lstat(path)
        if (status.st_dev, status.st_ino) == identity:
            os.remove(path)


def _dotenv_quote(value: str) -> str:
    if value and all(ch.isalnum() or ch in "-_./:@%+,=[]~" for ch in value):
        return value
    return json.dumps(value)  # double-quoted with backslash escapes, as dotenv readers take it


def _identity_document(identity: Any) -> dict[str, str]:
    return {
        "client_id": identity.client_id,
        "object_id": identity.object_id,
        "resource_id": identity.resource_id,
    }


def _document(emulator: Any, args: argparse.Namespace, variables: Mapping[str, str]) -> dict[str, Any]:
    source = emulator.source
    document: dict[str, Any] = {
        "source": source.value,
        "url": emulator.url,
        "pid": os.getpid(),
        "env": dict(variables),
        "ca_file": emulator.ca_file,
        "system_identity": _identity_document(emulator.system_identity),
        "identities": [_identity_document(identity) for identity in emulator.identities],
        "tenant_id": emulator.tenant_id,
        "lifetime": emulator.token_lifetime,
        "fail": list(args.fail),
        "latency": args.latency,
        "scenario": getattr(args, "scenario", None),
    }
    if source is ManagedIdentitySource.AZURE_ARC:
        document["key_directory"] = emulator.key_directory
    if emulator.token_proxy:
        document["token_proxy"] = {"server_name": emulator.proxy_server_name, "path": emulator.proxy_path}
    if args.env_file:
        document["env_file"] = os.path.abspath(args.env_file)
    return document


def _lines(emulator: Any, args: argparse.Namespace, variables: Mapping[str, str]) -> list[str]:
    """The shell or dotenv form: comments, then one line per variable."""
    source = emulator.source
    shell = args.format == "shell"

    def assign(name: str) -> str:
        value = variables[name]
        return f"export {name}={shlex.quote(value)}" if shell else f"{name}={_dotenv_quote(value)}"

    lines = [
        f"# {source.value} emulator listening at {emulator.url} (pid {os.getpid()})",
        "# point any Azure SDK's managed identity credential at it: paste these lines into the shell that runs "
        "your application",
    ]
    trust = [name for name in variables if name in _TRUST_COMMENTS]
    lines += [assign(name) for name in variables if name not in _TRUST_COMMENTS]
    if source is ManagedIdentitySource.SERVICE_FABRIC:
        lines.append(
            "# IDENTITY_SERVER_THUMBPRINT pins the server certificate for the clients that check it "
            "(msal, msi-credential); the JavaScript clients check the CA below instead, and azure-identity does "
            "not check the certificate for Service Fabric"
        )
    if trust:
        lines.append(
            "# the server certificate is signed by a certificate authority made for this run (its key never "
            "leaves this process; removed at stop); each line below tells one SDK family to trust it:"
        )
        for name in trust:
            lines += [f"# {_TRUST_COMMENTS[name]}", assign(name)]
        lines.append(
            f"# Java: import the CA into a trust store (keytool -importcert -file {emulator.ca_file})"
        )
    if source is ManagedIdentitySource.AZURE_ARC:
        lines.append(
            f"# Azure Arc: challenge key files are written to {emulator.key_directory}, as the agent does "
            "(readable by the himds group), and removed at stop"
        )
    if source is ManagedIdentitySource.WORKLOAD_IDENTITY and emulator.token_proxy:
        lines += [
            "# workload identity through the AKS token proxy (identity bindings): clients that opt in "
            "(msi-credential and azure-identity: enable_azure_proxy=True) post the federated token file's assertion "
            "to AZURE_KUBERNETES_TOKEN_PROXY, the token request's path appended to the proxy's",
            f"# the proxy's certificate is for {emulator.proxy_server_name} (AZURE_KUBERNETES_SNI_NAME, sent as SNI "
            "and verified instead of the address) and signed by a CA made for this run (AZURE_KUBERNETES_CA_FILE; "
            "its key never leaves this process; removed at stop)",
            "# clients that do not opt in go to AZURE_AUTHORITY_HOST, this same server, and refuse its certificate: "
            "nothing is sent",
        ]
    elif source is ManagedIdentitySource.WORKLOAD_IDENTITY:
        expired = getattr(args, "scenario", None) == "expired_federated_token"
        lines.append(
            f"# workload identity: the federated token file holds {'an expired' if expired else 'a fresh'} client "
            "assertion; Entra's v2.0 token endpoint is served over https at AZURE_AUTHORITY_HOST"
        )
    system = emulator.system_identity
    label = (
        "the workload's app (AZURE_CLIENT_ID)"
        if source is ManagedIdentitySource.WORKLOAD_IDENTITY
        else "system-assigned identity"
    )
    lines.append(f"# {label}: client id {system.client_id}, object id {system.object_id}")
    for identity in emulator.identities:
        extra = f", resource id {identity.resource_id}" if identity.resource_id else ""
        lines.append(
            f"# {'another app the federated credential may ask for' if source is ManagedIdentitySource.WORKLOAD_IDENTITY else 'user-assigned identity'}: client id {identity.client_id}, object id {identity.object_id}{extra}"
        )
    if args.fail:
        lines.append(f"# the next {len(args.fail)} request(s) fail with {','.join(map(str, args.fail))}")
    if getattr(args, "scenario", None):
        lines.append(f"# scenario {args.scenario}: {emulator.scenario.summary} (docs/testing.md)")
    if args.latency:
        lines.append(f"# every answer waits {args.latency:g} s")
    if args.env_file:
        lines.append(f"# the variables are also in {os.path.abspath(args.env_file)} (removed at stop)")
    lines.append(f"# Ctrl-C (or kill {os.getpid()}) stops it and removes the files it wrote")
    return lines
