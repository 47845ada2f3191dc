"""The emulator's TLS: a certificate authority made for each run, the server context, the SNI a client sent."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from ._wire import EmulatorSetupError, write_private

EMULATOR_EXTRA_HINT = "pip install 'msi-credential[emulator]'"
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
_handshake = threading.local()  # the SNI each handler thread's TLS handshake received


@dataclass(frozen=True)
class LoopbackFiles:
    """The files of a loopback server certificate and the CA made for this run that signed it."""

    certfile: str
    keyfile: str
    ca_file: str
    ca_bundle: str  # the usual public roots plus this run's CA


def _trustme(what: str) -> Any:
    try:
        import trustme
    except ImportError:
        raise EmulatorSetupError(
            f"{what} serves https with a certificate authority made for each run, "
            f"which needs the emulator extra: {EMULATOR_EXTRA_HINT}"
        ) from None
    return trustme


def make_loopback_certificate(directory: str, who: str) -> LoopbackFiles:
    """A certificate authority made for this run and a loopback server certificate it signs, in ``directory``; the
    CA's key stays in memory, so nothing else can ever be signed by it. ``who`` names the server in errors."""
    trustme = _trustme(who)
    authority = trustme.CA(organization_name="msi-credential emulator (this run only)")
    leaf = authority.issue_cert("127.0.0.1", "::1", "localhost")
    files = LoopbackFiles(
        certfile=os.path.join(directory, "server-cert.pem"),
        keyfile=os.path.join(directory, "server-key.pem"),
        ca_file=os.path.join(directory, "ca.pem"),
        ca_bundle=os.path.join(directory, "ca-bundle.pem"),
    )
    leaf.cert_chain_pems[0].write_to_path(files.certfile)
    write_private(files.keyfile, leaf.private_key_pem.bytes())
    authority.cert_pem.write_to_path(files.ca_file)
    with open(files.ca_bundle, "wb") as stream:
        stream.write(_public_roots() + b"\n" + authority.cert_pem.bytes())
    for path in (files.ca_file, files.ca_bundle, files.certfile):
        os.chmod(path, 0o644)  # the CA and bundle are public: clients of other users may read them
    os.chmod(directory, 0o755)  # noqa: S103 - public CA files; the server key inside stays 0600
    return files


def make_named_certificate(
    directory: str, server_name: str, *, who: str, organization: str
) -> tuple[str, str, str]:
    """A new CA (its key only in memory, ``organization`` its name) and a server certificate it signs for
    ``server_name`` only, in ``directory``: (certfile, keyfile, the CA in PEM). Each call makes new files."""
    trustme = _trustme(who)
    authority = trustme.CA(organization_name=organization)
    leaf = authority.issue_cert(server_name)
    serial = uuid.uuid4().hex[:12]
    certfile = os.path.join(directory, f"server-cert-{serial}.pem")
    keyfile = os.path.join(directory, f"server-key-{serial}.pem")
    leaf.cert_chain_pems[0].write_to_path(certfile)
    write_private(keyfile, leaf.private_key_pem.bytes())
    return certfile, keyfile, authority.cert_pem.bytes().decode("ascii")


def server_context(certfile: str, keyfile: str) -> tuple[ssl.SSLContext, str]:
    """The server's TLS context for this certificate, and the certificate's SHA-1 thumbprint."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certfile, keyfile)
    # Any server name is answered with this certificate, as most TLS servers do: refusing a wrong SNI is the
    # client's job, and the recorded server_name shows what it sent.
    context.sni_callback = _record_server_name
    return context, _leaf_thumbprint(certfile)


def forget_server_name() -> None:
    """Before a handshake on this thread: no server name received yet."""
    _handshake.server_name = None


def received_server_name() -> Optional[str]:
    """The server name the last handshake on this thread received (None: none)."""
    return getattr(_handshake, "server_name", None)


def _record_server_name(connection: Any, server_name: str | None, context: ssl.SSLContext) -> None:
    """The TLS server name the client sent (None: none), for the request recorded on this handler thread."""
    _handshake.server_name = server_name


def _public_roots() -> bytes:
    """The usual public root certificates in PEM: certifi's (requests brings it), else the system's CA file."""
    candidates: list[str] = []
    try:
        import certifi

        candidates.append(certifi.where())
    except ImportError:
        pass
    default = ssl.get_default_verify_paths().cafile
    if default:
        candidates.append(default)
    for path in candidates:
        try:
            with open(path, "rb") as stream:
                return stream.read()
        except OSError:
            continue
    return b""


def _leaf_thumbprint(certfile: str) -> str:
    with open(certfile, "rb") as stream:
        match = _PEM_CERTIFICATE.search(stream.read())
    if match is None:
        raise ValueError(f"no PEM certificate in {certfile}")
    der = ssl.PEM_cert_to_DER_cert(match.group(0).decode("ascii"))
    return hashlib.sha1(der, usedforsecurity=False).hexdigest()
