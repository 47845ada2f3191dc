"""The ``msi-credential`` command: token, detect, emulate, demo.

Exit codes: 0 success; 1 the managed identity endpoint failed (ManagedIdentityError); 2 bad arguments;
3 managed identity is unavailable here (CredentialUnavailableError); 130 interrupted.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Optional, TextIO
from urllib.parse import urlsplit

from ._engine.detection import VARIABLES, SourceConfig, detect
from ._errors import CredentialUnavailableError, ManagedIdentityError
from ._source import ManagedIdentitySource
from ._version import VERSION
from .emulator import _cli as emulator_cli

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

_SECRET_VARIABLES = frozenset({"IDENTITY_HEADER", "MSI_SECRET"})
_EMULATED_SOURCES = [
    ManagedIdentitySource.IMDS,
    ManagedIdentitySource.APP_SERVICE,
    ManagedIdentitySource.AZURE_ARC,
    ManagedIdentitySource.CLOUD_SHELL,
    ManagedIdentitySource.SERVICE_FABRIC,
    ManagedIdentitySource.MACHINE_LEARNING,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="msi-credential",
        description="Azure managed identity tokens: get one, see which source applies, or emulate the endpoints.",
        epilog="Exit codes: 0 ok, 1 endpoint failed, 2 bad arguments, 3 managed identity unavailable, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"msi-credential {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    token = commands.add_parser(
        "token",
        help="acquire a token through the real credential",
        description="Acquire a token through the real credential and show its source, expiry and refresh time. "
        "The token itself is printed only with --json or --raw.",
    )
    token.add_argument("scope", metavar="RESOURCE_OR_SCOPE", help="e.g. https://storage.azure.com/.default")
    identity = token.add_mutually_exclusive_group()
    identity.add_argument("--client-id", metavar="ID", help="user-assigned identity by client id")
    identity.add_argument("--object-id", metavar="ID", help="user-assigned identity by object (principal) id")
    identity.add_argument("--resource-id", metavar="ID", help="user-assigned identity by ARM resource id")
    output = token.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON object, token included")
    output.add_argument("--raw", action="store_true", help="print only the access token")
    token.add_argument(
        "--decode",
        action="store_true",
        help="show the JWT's claims (decoded only: the signature is NOT checked)",
    )

    detect_command = commands.add_parser(
        "detect",
        help="show which source this environment selects, and why",
        description="Show which managed identity source the environment selects and the variables that decided it "
        "(secrets masked). Nothing is sent unless --probe is given.",
    )
    detect_command.add_argument(
        "--probe", action="store_true", help="also check whether the endpoint accepts a TCP connection"
    )

    emulate = commands.add_parser(
        "emulate",
        help="run the loopback emulator in the foreground",
        description="Run a managed identity endpoint on loopback for local development and print the variables "
        "that point any Azure SDK's managed identity credential at it (and make it trust the emulator's "
        "certificate). Ctrl-C, SIGTERM or SIGHUP stops it and removes the files it wrote.",
    )
    emulator_cli.add_arguments(emulate)

    commands.add_parser(
        "demo",
        help="get tokens from every source against the built-in emulator",
        description="Start the emulator in-process for each source, acquire tokens through the real credential, "
        "and show the cache at work. Needs no Azure and no network.",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None) -> int:
    """Run the command; returns the exit code (argparse exits with 2 on bad arguments)."""
    out = stdout or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command == "token":
            return _token(args, out)
        if args.command == "detect":
            return _detect(args, out, os.environ)
        if args.command == "emulate":
            return _emulate(args, out)
        return _demo(out)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _token(args: argparse.Namespace, out: TextIO) -> int:
    from ._credential import ManagedIdentityCredential
    from ._observe import with_origin

    try:
        with ManagedIdentityCredential(
            client_id=args.client_id, object_id=args.object_id, resource_id=args.resource_id
        ) as credential:
            info, origin = with_origin(lambda: credential.get_token_info(args.scope))
            source = credential.source
    except ValueError as error:
        print(f"msi-credential token: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CredentialUnavailableError as error:
        print(f"unavailable ({error.error_code}): {error.message}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ManagedIdentityError as error:
        print(f"failed ({error.error_code}): {error.message}", file=sys.stderr)
        return EXIT_FAILED
    if args.raw:
        print(info.token, file=out)
        return EXIT_OK
    claims = decode_claims(info.token) if args.decode else None
    if args.json:
        document: dict[str, Any] = {
            "source": source.value,
            "origin": origin.origin,
            "token_type": info.token_type,
            "expires_on": info.expires_on,
            "refresh_on": info.refresh_on,
            "access_token": info.token,
        }
        if args.decode:
            document["claims"] = claims
            document["claims_note"] = "decoded only; the signature is not checked"
        print(json.dumps(document, indent=2), file=out)
        return EXIT_OK
    now = time.time()
    print(f"source:      {source.value}", file=out)
    print(f"from:        {origin.describe()}", file=out)  # the endpoint or the cache, as logged at DEBUG
    print(f"token type:  {info.token_type}", file=out)
    print(f"expires:     {_moment(info.expires_on)} ({_relative(info.expires_on - now)})", file=out)
    if info.refresh_on is not None:
        print(f"refresh at:  {_moment(info.refresh_on)} ({_relative(info.refresh_on - now)})", file=out)
    print("token:       (hidden; use --json or --raw to print it)", file=out)
    if args.decode:
        print("claims (decoded only, the signature is NOT checked):", file=out)
        print(json.dumps(claims, indent=2, sort_keys=True) if claims is not None else "  not a JWT", file=out)
    return EXIT_OK


def decode_claims(token: str) -> Optional[dict[str, Any]]:
    """The payload of a JWT, without any signature check; None when it is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _moment(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _relative(seconds: float) -> str:
    sign = "in " if seconds >= 0 else ""
    suffix = "" if seconds >= 0 else " ago"
    seconds = abs(int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
    return f"{sign}{text}{suffix}"


def _detect(args: argparse.Namespace, out: TextIO, environ: Mapping[str, str]) -> int:
    from ._environment import get_managed_identity_source

    source = get_managed_identity_source() if environ is os.environ else None
    config = detect(dict(environ), platform=sys.platform, path_exists=os.path.exists)
    print(f"source:    {(source or config.source).value}", file=out)
    print(f"endpoint:  {config.endpoint}", file=out)
    print(f"because:   {_reason(config)}", file=out)
    print("variables:", file=out)
    for name in VARIABLES:
        value = environ.get(name)
        if value is None or not value.strip():
            shown = "(not set)"
        elif name in _SECRET_VARIABLES:
            shown = "(set, hidden)"
        else:
            shown = value
        print(f"  {name:<34} {shown}", file=out)
    if config.problem is not None:
        print(f"problem:   {config.problem[0]}: {config.problem[1]}", file=out)
    if config.source is ManagedIdentitySource.WORKLOAD_IDENTITY:
        proxied = detect(
            dict(environ), platform=sys.platform, path_exists=os.path.exists, enable_azure_proxy=True
        )
        if proxied.token_proxy is not None:
            print(
                f"proxy:     with enable_azure_proxy=True, token requests go to {proxied.endpoint}", file=out
            )
        elif proxied.problem is not None and config.problem is None:
            print(f"proxy:     enable_azure_proxy=True would refuse this: {proxied.problem[1]}", file=out)
    if not args.probe:
        print("probe:     not run (use --probe to check that the endpoint answers)", file=out)
        return EXIT_OK
    if config.problem is not None:
        # The credential refuses this configuration before opening any socket (PROTOCOLS.md section 9): so
        # does the probe, which must never connect to an endpoint that was rejected (e.g. a non-local host).
        print("probe:     not run (the configuration is invalid, see problem above)", file=out)
        return EXIT_FAILED
    answered, detail = _probe(config.endpoint)
    print(f"probe:     {'answers' if answered else 'no answer'} ({detail})", file=out)
    return EXIT_OK if answered else EXIT_UNAVAILABLE


def _reason(config: SourceConfig) -> str:
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


def _probe(endpoint: str) -> tuple[bool, str]:
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False, f"not a URL: {endpoint!r}"
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True, f"TCP connection to {host}:{port} accepted"
    except OSError as error:
        return False, f"{host}:{port}: {error.strerror or type(error).__name__}"


def _emulate(args: argparse.Namespace, out: TextIO) -> int:
    return emulator_cli.run(args, out)


def _demo(out: TextIO) -> int:
    from ._credential import ManagedIdentityCredential
    from .emulator import Emulator, decode_jwt

    scope = "https://storage.azure.com/.default"
    print(
        "msi-credential demo: tokens through the real credential, from the built-in loopback emulator\n",
        file=out,
    )
    header = f"{'source':<18}{'detected as':<18}{'1st call':>10}{'requests':>10}{'2nd call':>11}{'requests':>10}  audience"
    print(header, file=out)
    print("-" * len(header), file=out)
    failures = 0
    rows = [(source, False) for source in [*_EMULATED_SOURCES, ManagedIdentitySource.WORKLOAD_IDENTITY]]
    rows.append((ManagedIdentitySource.WORKLOAD_IDENTITY, True))  # through the AKS token proxy
    for source, token_proxy in rows:
        name = "+ token proxy" if token_proxy else source.value
        try:
            emulator = Emulator(source, token_proxy=token_proxy).start()
        except RuntimeError as error:
            print(f"{name:<18}skipped: {error}", file=out)
            continue
        try:
            credential = ManagedIdentityCredential(
                _environ=emulator.environ,
                share_cache=False,
                enable_azure_proxy=token_proxy,
                **emulator.credential_kwargs,
            )
            with credential:
                started = time.perf_counter()
                first = credential.get_token(scope)
                first_ms = (time.perf_counter() - started) * 1000
                first_requests = len(emulator.requests)
                started = time.perf_counter()
                second = credential.get_token(scope)
                second_us = (time.perf_counter() - started) * 1e6
                second_requests = len(emulator.requests) - first_requests
                assert first.token == second.token
                audience = decode_jwt(first.token).get("aud", "?")
                print(
                    f"{name:<18}{credential.source.value:<18}{first_ms:>8.1f}ms{first_requests:>10}"
                    f"{second_us:>9.1f}us{second_requests:>10}  {audience}",
                    file=out,
                )
        except ManagedIdentityError as error:
            failures += 1
            print(f"{name:<18}failed: {error.error_code}: {error.message}", file=out)
        finally:
            emulator.stop()
    print(
        "\n1st call: token request(s) sent to the endpoint (Azure Arc answers a 401 challenge first, so 2).\n"
        "2nd call: served from the in-memory cache, no request.\n"
        "+ token proxy: workload identity with enable_azure_proxy=True, through the emulated AKS token proxy "
        "(its own CA and server name).",
        file=out,
    )
    return EXIT_FAILED if failures else EXIT_OK
