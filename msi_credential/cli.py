"""The ``msi-credential`` command: token, detect, emulate, demo.

Exit codes: 0 success; 1 the managed identity endpoint failed (ManagedIdentityError); 2 bad arguments;
3 managed identity is unavailable here (CredentialUnavailableError); 130 interrupted; 141 the reader of the output
went away (a closed pipe, e.g. ``| head -1``), the status a shell reports for a command ended by SIGPIPE.

Text that comes from an endpoint (error messages, answers to ``detect --probe``) or from the environment is printed
through ``printable()``: a terminal control character (escape sequences, carriage returns, forged line breaks)
never reaches the terminal as it is.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Callable, Optional, TextIO
from urllib.parse import urlsplit

from ._engine.detection import VARIABLES, detect, detection_reason
from ._errors import CredentialUnavailableError, ManagedIdentityError
from ._source import ManagedIdentitySource
from ._version import VERSION
from .emulator import _cli as emulator_cli

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `yes | head -1`'s yes

PROBE_TIMEOUT = (
    5.0  # seconds: the whole of `detect --probe`, connection, request and answer, however it trickles
)
_MAX_PROBE_TIMEOUT = 600.0

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
        allow_abbrev=False,
        description="Azure managed identity tokens: get one, see which source applies, or emulate the endpoints.",
        epilog="Exit codes: 0 ok, 1 endpoint failed, 2 bad arguments, 3 managed identity unavailable, 130 interrupted, "
        "141 output pipe closed.",
    )
    parser.add_argument("--version", action="version", version=f"msi-credential {VERSION}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    token = commands.add_parser(
        "token",
        help="acquire a token through the real credential",
        description="Acquire a token through the real credential and show its source, expiry and refresh time. "
        "The token itself is printed only with --json, -o json or --raw. Name the resource as a positional "
        "argument, or as az account get-access-token does: --resource or --scope.",
    )
    token.set_defaults(token_parser=token)
    token.add_argument(
        "scope",
        nargs="?",
        metavar="RESOURCE_OR_SCOPE",
        help="e.g. https://storage.azure.com/.default (or use --resource / --scope)",
    )
    token.add_argument(
        "--resource", dest="resource_option", metavar="RESOURCE", help="as az: e.g. https://vault.azure.net"
    )
    token.add_argument(
        "--scope",
        dest="scope_option",
        metavar="SCOPE",
        nargs="+",
        help="as az: e.g. https://vault.azure.net/.default (one scope: a token is for one resource)",
    )
    identity = token.add_mutually_exclusive_group()
    identity.add_argument("--client-id", metavar="ID", help="user-assigned identity by client id")
    identity.add_argument("--object-id", metavar="ID", help="user-assigned identity by object (principal) id")
    identity.add_argument(
        "--resource-id",
        metavar="ID",
        help="user-assigned identity by ARM resource id (not the token's resource)",
    )
    output = token.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print a JSON object, token included")
    output.add_argument("--raw", action="store_true", help="print only the access token")
    output.add_argument(
        "-o",
        "--output",
        choices=["json"],
        help="json: the JSON of az account get-access-token (accessToken, expiresOn, expires_on, tenant, "
        "subscription when the token names them, tokenType), token included",
    )
    token.add_argument(
        "--decode",
        action="store_true",
        help="show the JWT's claims (decoded only: the signature is NOT checked); not with --raw or -o json",
    )

    detect_command = commands.add_parser(
        "detect",
        help="show which source this environment selects, and why",
        description="Show which managed identity source the environment selects and the variables that decided it "
        "(secrets masked). Nothing is sent unless --probe is given.",
    )
    detect_command.add_argument(
        "--probe",
        action="store_true",
        help="also check that the endpoint answers: for IMDS an HTTP request only IMDS answers the IMDS way "
        "(no Metadata header, so no token), for the others a TCP connection (no secret is sent)",
    )
    detect_command.add_argument(
        "--timeout",
        type=_probe_timeout,
        default=PROBE_TIMEOUT,
        metavar="SECONDS",
        help=f"with --probe: give up after this long in all, however slowly the endpoint answers "
        f"(default {PROBE_TIMEOUT:g})",
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
    _no_abbreviations(parser)
    return parser


def _probe_timeout(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.0 < value <= _MAX_PROBE_TIMEOUT:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {_MAX_PROBE_TIMEOUT:g} seconds")
    return value


def _no_abbreviations(parser: argparse.ArgumentParser) -> None:
    """Refuse abbreviated options on the parser and every subcommand's parser, present and future: with
    abbreviations, ``--resource`` would silently mean ``--resource-id``."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _no_abbreviations(child)


def main(argv: Optional[Sequence[str]] = None, *, stdout: Optional[TextIO] = None) -> int:
    """Run the command; returns the exit code (argparse exits with 2 on bad arguments)."""
    out = stdout or sys.stdout
    try:
        try:
            args = build_parser().parse_args(argv)
            if args.command == "token":
                return _token(args, out)
            if args.command == "detect":
                return _detect(args, out, os.environ)
            if args.command == "emulate":
                return _emulate(args, out)
            return _demo(out)
        finally:
            out.flush()  # a closed pipe shows here, where it is handled, not at interpreter exit
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _discard_output(out)
        return EXIT_BROKEN_PIPE


def _discard_output(out: TextIO) -> None:
    """The reader went away: point the standard streams that are real files at the null device, so the flush at
    interpreter exit has nowhere to fail and prints no "Exception ignored" (the way the ``signal`` module's
    documentation recommends, its note on SIGPIPE)."""
    for stream in {id(out): out, id(sys.stdout): sys.stdout, id(sys.stderr): sys.stderr}.values():
        try:
            descriptor = stream.fileno()
        except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
            continue
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, descriptor)
        finally:
            os.close(null)


def _token_scope(args: argparse.Namespace) -> str:
    """The one resource or scope asked for, however it was typed; conflicting flags exit 2 (argparse's error)."""
    parser: argparse.ArgumentParser = args.token_parser
    given = [
        name
        for name, value in (
            ("RESOURCE_OR_SCOPE", args.scope),
            ("--resource", args.resource_option),
            ("--scope", args.scope_option),
        )
        if value is not None
    ]
    if not given:
        parser.error("a resource or scope is required: RESOURCE_OR_SCOPE, --resource or --scope")
    if len(given) > 1:
        parser.error(f"give the resource once: {' and '.join(given)} were both given")
    if args.decode and args.raw:
        parser.error("argument --decode: not allowed with argument --raw (it prints only the token)")
    if args.decode and args.output == "json":
        parser.error(
            "argument --decode: not allowed with argument -o/--output json (az's fields only); use --json"
        )
    if args.scope_option is not None:
        if len(args.scope_option) != 1:
            parser.error("argument --scope: one scope only (a token is for one resource)")
        return str(args.scope_option[0])
    return str(args.resource_option if args.resource_option is not None else args.scope)


def _token(args: argparse.Namespace, out: TextIO) -> int:
    from ._credential import ManagedIdentityCredential
    from ._observe import with_origin

    scope = _token_scope(args)
    progress = Progress(sys.stderr)
    try:
        with (
            progress,
            ManagedIdentityCredential(
                client_id=args.client_id,
                object_id=args.object_id,
                resource_id=args.resource_id,
                **progress.credential_kwargs(),
            ) as credential,
        ):
            info, origin = with_origin(lambda: credential.get_token_info(scope))
            source = credential.source
    except ValueError as error:
        print(f"msi-credential token: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CredentialUnavailableError as error:
        print(f"unavailable ({printable(error.error_code)}): {printable(error.message)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except ManagedIdentityError as error:
        print(f"failed ({printable(error.error_code)}): {printable(error.message)}", file=sys.stderr)
        return EXIT_FAILED
    if args.raw:
        print(info.token, file=out)
        return EXIT_OK
    claims = decode_claims(info.token) if args.decode or args.output == "json" else None
    if args.output == "json":
        print(
            json.dumps(az_document(info.token, info.expires_on, info.token_type, claims), indent=2), file=out
        )
        return EXIT_OK
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
    print(
        f"from:        {printable(origin.describe())}", file=out
    )  # the endpoint or the cache, as logged at DEBUG
    print(f"token type:  {printable(info.token_type)}", file=out)
    print(f"expires:     {_moment(info.expires_on)} ({_relative(info.expires_on - now)})", file=out)
    if info.refresh_on is not None:
        print(f"refresh at:  {_moment(info.refresh_on)} ({_relative(info.refresh_on - now)})", file=out)
    print("token:       (hidden; use --json, -o json or --raw to print it)", file=out)
    if args.decode:
        print("claims (decoded only, the signature is NOT checked):", file=out)
        print(json.dumps(claims, indent=2, sort_keys=True) if claims is not None else "  not a JWT", file=out)
    return EXIT_OK


def az_document(
    token: str, expires_on: int, token_type: str, claims: Optional[Mapping[str, Any]]
) -> dict[str, Any]:
    """What ``az account get-access-token -o json`` prints, in its order: ``expiresOn`` in local time as az
    writes it, ``expires_on`` in epoch seconds. az prints the subscription and tenant of the signed-in account;
    a managed identity has no account, so ``tenant`` comes from the token's ``tid`` claim and ``subscription``
    from the identity's resource id (``xms_mirid``), each only when the token carries it."""
    document: dict[str, Any] = {
        "accessToken": token,
        "expiresOn": datetime.fromtimestamp(expires_on).strftime("%Y-%m-%d %H:%M:%S.%f"),
        "expires_on": int(expires_on),
    }
    subscription = _subscription_of(claims.get("xms_mirid") if claims else None)
    if subscription:
        document["subscription"] = subscription
    tenant = claims.get("tid") if claims else None
    if isinstance(tenant, str) and tenant:
        document["tenant"] = tenant
    document["tokenType"] = token_type
    return document


def _subscription_of(resource_id: object) -> Optional[str]:
    if not isinstance(resource_id, str):
        return None
    parts = resource_id.strip("/").split("/")
    if len(parts) >= 2 and parts[0].lower() == "subscriptions" and parts[1]:
        return parts[1]
    return None


class Progress:
    """Progress of a token request on ``stream`` (stderr), only when it is a terminal: each retry with the
    answer that caused it, and a line every few seconds while an endpoint is slow. Nothing secret is shown:
    statuses and counts only."""

    def __init__(
        self,
        stream: TextIO,
        *,
        every: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Optional[Callable[[float], None]] = None,
        wait: Optional[Callable[[float], bool]] = None,
    ) -> None:
        self.enabled = _is_terminal(stream)
        self._stream = stream
        self._every = every
        self._clock = clock
        self._sleep = sleep or time.sleep
        self._done = threading.Event()
        self._wait = wait or self._done.wait
        self._thread: Optional[threading.Thread] = None
        self._started = 0.0
        self.requests = 0
        self._last: Optional[str] = None

    def credential_kwargs(self) -> dict[str, Any]:
        if not self.enabled:
            return {}
        return {
            "raw_request_hook": self._on_request,
            "raw_response_hook": self._on_response,
            "_sleep": self.sleep,
        }

    def __enter__(self) -> Progress:
        self._started = self._clock()
        if self.enabled:
            self._thread = threading.Thread(target=self._tick, name="msi-credential-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _on_request(self, request: Any) -> None:
        self.requests += 1

    def _on_response(self, response: Any) -> None:
        try:
            self._last = f"HTTP {int(response.http_response.status_code)}"
        except (AttributeError, TypeError, ValueError):
            self._last = None

    def sleep(self, seconds: float) -> None:
        cause = self._last or "no answer"
        self._say(f"retrying in {seconds:g} s after {cause} ({self.requests} request(s) sent)")
        self._last = None
        self._sleep(seconds)

    def _tick(self) -> None:
        while not self._wait(self._every) and not self._done.is_set():
            elapsed = self._clock() - self._started
            self._say(f"still waiting for the endpoint: {elapsed:.0f} s, {self.requests} request(s) sent")

    def _say(self, text: str) -> None:
        if self.enabled and not self._done.is_set():
            print(f"msi-credential: {text}", file=self._stream, flush=True)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


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


def _without_user_info(value: str) -> str:
    """A URL's user info (a password, as likely as not) shown as ``***``; anything else as it is."""
    scheme, separator, rest = value.partition("://")
    authority, slash, path = rest.partition("/")
    if not separator or "@" not in authority:
        return value
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def _detect(args: argparse.Namespace, out: TextIO, environ: Mapping[str, str]) -> int:
    from ._environment import get_managed_identity_source

    source = get_managed_identity_source() if environ is os.environ else None
    config = detect(dict(environ), platform=sys.platform, path_exists=os.path.exists)
    print(f"source:    {(source or config.source).value}", file=out)
    print(f"endpoint:  {printable(_without_user_info(config.endpoint))}", file=out)
    print(f"because:   {detection_reason(config)}", file=out)
    print("variables:", file=out)
    for name in VARIABLES:
        value = environ.get(name)
        if value is None or not value.strip():
            shown = "(not set)"
        elif name in _SECRET_VARIABLES:
            shown = "(set, hidden)"
        else:
            shown = printable(_without_user_info(value))
        print(f"  {name:<34} {shown}", file=out)
    if config.problem is not None:
        print(f"problem:   {config.problem[0]}: {printable(config.problem[1])}", file=out)
    if config.source is ManagedIdentitySource.WORKLOAD_IDENTITY:
        proxied = detect(
            dict(environ), platform=sys.platform, path_exists=os.path.exists, enable_azure_proxy=True
        )
        if proxied.token_proxy is not None:
            print(
                f"proxy:     with enable_azure_proxy=True, token requests go to {printable(proxied.endpoint)}",
                file=out,
            )
        elif proxied.problem is not None and config.problem is None:
            print(
                f"proxy:     enable_azure_proxy=True would refuse this: {printable(proxied.problem[1])}",
                file=out,
            )
    if not args.probe:
        print("probe:     not run (use --probe to check that the endpoint answers)", file=out)
        return EXIT_OK
    if config.problem is not None:
        # The credential refuses this configuration before opening any socket (docs/protocols.md section 9): so
        # does the probe, which must never connect to an endpoint that was rejected (e.g. a non-local host).
        print("probe:     not run (the configuration is invalid, see problem above)", file=out)
        return EXIT_FAILED
    if config.source is ManagedIdentitySource.IMDS:
        answered, detail = probe_imds(config.endpoint, timeout=args.timeout)
    else:
        answered, detail = _probe(config.endpoint, timeout=args.timeout)
    print(f"probe:     {'answers' if answered else 'no answer'} ({detail})", file=out)
    return EXIT_OK if answered else EXIT_UNAVAILABLE


def _probe(endpoint: str, *, timeout: float = PROBE_TIMEOUT) -> tuple[bool, str]:
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False, f"not a URL: {printable(endpoint)!r}"
    try:
        with socket.create_connection((host, port), timeout=min(1.0, timeout)):
            return True, f"TCP connection to {host}:{port} accepted"
    except OSError as error:
        return False, f"{host}:{port}: {printable(error.strerror or type(error).__name__)}"


# The question the IMDS probe asks: a token request without the Metadata header. IMDS refuses it with 400 and
# an OAuth error body naming the header (docs/protocols.md section 13); no token is issued, none is wanted.
_IMDS_PROBE_QUERY = "api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com"
_PROBE_BODY_LIMIT = 65536


class _ProbeDeadline(Exception):
    """The probe's overall time is up."""


class _DeadlineSocket:
    """The connected socket as ``http.client`` sees it: every send and every read is bounded by what is left of
    one deadline, so an endpoint that answers a byte at a time cannot stretch the probe (a socket timeout alone is
    per read, and each byte restarts it)."""

    def __init__(self, sock: socket.socket, deadline: float, clock: Callable[[], float]) -> None:
        self._sock = sock
        self._deadline = deadline
        self._clock = clock

    def _arm(self) -> None:
        remaining = self._deadline - self._clock()
        if remaining <= 0:
            raise _ProbeDeadline
        self._sock.settimeout(remaining)

    def sendall(self, data: bytes) -> None:
        self._arm()
        try:
            self._sock.sendall(data)  # one timeout for the whole call (Python 3.5+)
        except socket.timeout:
            raise _ProbeDeadline from None

    def recv_into(self, buffer: Any) -> int:
        self._arm()
        try:
            return self._sock.recv_into(buffer)
        except socket.timeout:
            raise _ProbeDeadline from None

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def close(self) -> None:
        self._sock.close()


class _DeadlineReader(io.RawIOBase):
    def __init__(self, sock: _DeadlineSocket) -> None:
        self._source = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._source.recv_into(buffer)


def _probe_connect(
    host: str, port: int, tls: bool, deadline: float, clock: Callable[[], float]
) -> socket.socket:
    """A connected socket (over TLS for https), each step bounded by what is left of ``deadline``: the ssl module
    bounds a whole handshake by the socket's timeout."""
    remaining = deadline - clock()
    if remaining <= 0:
        raise _ProbeDeadline
    try:
        sock = socket.create_connection((host, port), timeout=remaining)
    except socket.timeout:
        raise _ProbeDeadline from None
    if not tls:
        return sock
    try:
        remaining = deadline - clock()
        if remaining <= 0:
            raise _ProbeDeadline
        sock.settimeout(remaining)
        return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    except socket.timeout:
        sock.close()
        raise _ProbeDeadline from None
    except BaseException:
        sock.close()
        raise


def probe_imds(
    endpoint: str, *, timeout: float = PROBE_TIMEOUT, clock: Callable[[], float] = time.monotonic
) -> tuple[bool, str]:
    """Ask ``endpoint`` (the IMDS token URL) a question only IMDS answers the IMDS way; (is IMDS, what answered).

    Other clouds' metadata servers listen at 169.254.169.254 too, so an accepted connection proves nothing.
    Plain ``http.client``: no proxy, no redirect, no Metadata header, no secret. ``timeout`` bounds the whole probe
    (connection, TLS handshake, request and answer, measured on ``clock``), however slowly the endpoint answers."""
    deadline = clock() + timeout
    try:
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False, f"not a URL: {printable(endpoint)!r}"
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.sock = _DeadlineSocket(
            _probe_connect(host, port, parts.scheme == "https", deadline, clock), deadline, clock
        )
        connection.request(
            "GET",
            f"{parts.path or '/'}?{_IMDS_PROBE_QUERY}",
            headers={"User-Agent": f"msi-credential/{VERSION} (detect --probe)", "Connection": "close"},
        )
        response = connection.getresponse()
        body = response.read(_PROBE_BODY_LIMIT)
        status, reason = response.status, response.reason
        content_type = response.getheader("Content-Type", "") or "no content type"
    except _ProbeDeadline:
        return False, f"{host}:{port}: no complete answer within {timeout:g} s"
    except (OSError, http.client.HTTPException) as error:
        text = getattr(error, "strerror", None) or str(error) or type(error).__name__
        return False, f"{host}:{port}: {printable(text)}"
    finally:
        connection.close()
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        document = None
    if isinstance(document, dict):
        code = document.get("error")
        description = document.get("error_description")
        if (
            status == 400
            and code == "invalid_request"
            and isinstance(description, str)
            and "metadata" in description.lower()
        ):
            return True, f"IMDS at {host}:{port}: HTTP 400 invalid_request, {printable(description, 120)!r}"
    return False, (
        f"something at {host}:{port} answered, but not as IMDS does: HTTP {status} {printable(reason, 120)}, "
        f"{printable(content_type, 120)} (IMDS refuses a request without the Metadata header with 400 "
        "invalid_request)"
    )


def printable(text: str, limit: Optional[int] = None) -> str:
    """``text`` safe to print on a terminal: every character that is not printable (escape sequences, carriage
    returns, line breaks, other control and format characters) becomes ``?``; cut at ``limit`` characters."""
    cleaned = "".join(character if character.isprintable() else "?" for character in text)
    return cleaned if limit is None or len(cleaned) <= limit else cleaned[:limit] + "..."


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
            print(f"{name:<18}failed: {printable(error.error_code)}: {printable(error.message)}", file=out)
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
