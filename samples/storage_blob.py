"""Use ManagedIdentityCredential with azure-storage-blob: create a container, upload, list, download, delete.

Run it (from the repository root, with the dev extra installed: it brings azure-storage-blob and trustme):

    npm ci                              # once: installs Azurite, the Azure Storage emulator, from package-lock.json
    python samples/storage_blob.py      # optional: --source app_service, --azurite PATH/TO/azurite-blob

Everything runs on this machine, without Azure: the sample starts Azurite's blob service over HTTPS (a certificate
from a throwaway trustme CA) with ``--oauth basic``, so Azurite checks each bearer token's issuer, audience and
lifetime like Azure Storage does, and it starts the package's loopback emulator of a managed identity endpoint
(IMDS by default) in-process and points the credential at it. It prints each step, and at the end how many tokens
the credential asked for: one, for the whole run. It exits with 2 and says what to do if Azurite is not installed.

In Azure, drop both emulators; the code that matters is the same:

    credential = ManagedIdentityCredential()
    service = BlobServiceClient("https://<account>.blob.core.windows.net", credential=credential)
"""

from __future__ import annotations

import argparse
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from azure.core.exceptions import AzureError

from msi_credential import ManagedIdentityCredential, ManagedIdentityError
from msi_credential.emulator import Emulator

try:  # the client library this sample needs besides msi-credential: say which, not a traceback
    from azure.storage.blob import BlobServiceClient
except ModuleNotFoundError as missing:
    if not (missing.name or "").startswith("azure.storage"):
        raise
    print(
        "storage_blob.py needs azure-storage-blob: pip install azure-storage-blob (the dev extra has it)",
        file=sys.stderr,
    )
    raise SystemExit(2) from None

REPO_ROOT = Path(__file__).resolve().parent.parent
AZURITE_BLOB = REPO_ROOT / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "devstoreaccount1"  # Azurite's well-known development account
STARTUP_TIMEOUT = 30.0
BLOBS = {"hello.txt": b"hello from a managed identity\n", "reports/2024.csv": b"month,total\n1,42\n"}
# Variables that select a managed identity source: the sample replaces them with the emulator's.
MANAGED_IDENTITY_VARIABLES = (
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "AZURE_FEDERATED_TOKEN_FILE",
)


class AzuriteError(RuntimeError):
    """Azurite did not start."""


def write_certificates(directory: Path) -> Path:
    """A throwaway CA and a certificate for 127.0.0.1 and localhost; returns the CA file's path."""
    import trustme

    authority = trustme.CA()
    leaf = authority.issue_cert("127.0.0.1", "localhost")
    (directory / "cert.pem").write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(directory / "key.pem"))
    authority.cert_pem.write_to_path(str(directory / "ca.pem"))
    return directory / "ca.pem"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _answers_tls(port: int, ca_path: Path) -> bool:
    context = ssl.create_default_context(cafile=str(ca_path))
    try:
        raw = socket.create_connection(("127.0.0.1", port), timeout=1.0)
        with raw, context.wrap_socket(raw, server_hostname="127.0.0.1"):
            return True
    except OSError:  # ssl.SSLError included
        return False


def start_azurite(executable: Path, directory: Path, ca_path: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start Azurite's blob service over HTTPS with OAuth on a free loopback port; wait until it answers."""
    port = _free_port()
    (directory / "data").mkdir()
    log_path = directory / "azurite.log"
    command = [
        str(executable),
        "--blobHost",
        "127.0.0.1",
        "--blobPort",
        str(port),
        "--oauth",
        "basic",
        "--cert",
        str(directory / "cert.pem"),
        "--key",
        str(directory / "key.pem"),
        "--location",
        str(directory / "data"),
        "--disableTelemetry",
        "--skipApiVersionCheck",
        "--silent",
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while process.poll() is None and time.monotonic() < deadline:
        if _answers_tls(port, ca_path):
            return process, port
        time.sleep(0.05)
    stop_azurite(process)
    output = log_path.read_text(encoding="utf-8", errors="replace").strip()
    raise AzuriteError(
        f"Azurite did not start within {STARTUP_TIMEOUT:.0f} s (exit code {process.returncode}): {output}"
    )


def stop_azurite(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_blob_operations(service: BlobServiceClient) -> None:
    """What an application does with a storage account: no credential code in sight."""
    name = f"sample-{int(time.time())}"
    container = service.create_container(name)
    print(f"created container  {name}")
    for blob, data in BLOBS.items():
        container.upload_blob(blob, data, overwrite=True)
        print(f"uploaded           {blob} ({len(data)} bytes)")
    listed = sorted(item.name for item in container.list_blobs())
    print(f"listed             {', '.join(listed)}")
    for blob, data in BLOBS.items():
        downloaded = container.download_blob(blob).readall()
        if downloaded != data:
            raise RuntimeError(f"{blob}: downloaded content differs from what was uploaded")
        print(f"downloaded         {blob} ({len(downloaded)} bytes, content matches)")
    for blob in BLOBS:
        container.delete_blob(blob)
        print(f"deleted            {blob}")
    service.delete_container(name)
    print(f"deleted container  {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None, allow_abbrev=False
    )
    parser.add_argument("--source", choices=["imds", "app_service"], default="imds")
    parser.add_argument("--azurite", type=Path, default=AZURITE_BLOB, help="the azurite-blob executable")
    args = parser.parse_args(argv)

    if not args.azurite.exists():
        print(
            f"Azurite is not installed ({args.azurite} is missing).\n"
            f"Install it from the lockfile with `npm ci` in {REPO_ROOT} (needs Node.js), then run this again.",
            file=sys.stderr,
        )
        return 2

    with tempfile.TemporaryDirectory(prefix="msi-storage-sample-") as work, Emulator(args.source) as emulator:
        directory = Path(work)
        try:
            ca_path = write_certificates(directory)
        except ImportError:
            print("trustme is not installed: pip install trustme (the dev extra has it)", file=sys.stderr)
            return 2
        started = time.monotonic()
        try:
            azurite, port = start_azurite(args.azurite, directory, ca_path)
        except AzuriteError as error:
            print(error, file=sys.stderr)
            return 1
        print(f"Azurite            https://127.0.0.1:{port} (started in {time.monotonic() - started:.2f} s)")
        print(f"managed identity   {args.source} emulator at {emulator.url}")
        for variable in MANAGED_IDENTITY_VARIABLES:
            os.environ.pop(variable, None)
        os.environ.update(emulator.environ)  # what `msi-credential emulate` prints as export lines
        try:
            with ManagedIdentityCredential() as credential:
                # An IP host: the account is the first path segment. connection_verify: trust the throwaway CA.
                account_url = f"https://127.0.0.1:{port}/{ACCOUNT}"
                service = BlobServiceClient(
                    account_url, credential=credential, connection_verify=str(ca_path)
                )
                with service:
                    run_blob_operations(service)
        except ManagedIdentityError as error:
            print(f"no token ({error.error_code}): {error}", file=sys.stderr)
            return 1
        except AzureError as error:
            print(f"storage request failed: {error}", file=sys.stderr)
            return 1
        finally:
            stop_azurite(azurite)
        print(f"tokens issued      {emulator.tokens_issued} (one token served every request)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
