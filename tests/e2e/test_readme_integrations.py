"""The README's integration examples run unchanged against the emulator, Azurite and loopback stand-ins.

Each block runs in its own Python process, as a user would run it, with the managed identity variables pointing at
the emulator and the service URLs at loopback. The process gets the loopback socket guard; the Key Vault block's
vault name is answered by a hosts-file-like resolver in that process (127.0.0.1 and the stand-in's port), so no DNS
query leaves the machine and the client's challenge-resource check stays on.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from msi_credential.emulator import Emulator, decode_jwt

from ..https_stand_in import Answer, Call, HttpsServer, KeyVaultStandIn, Tls
from ..subprocesses import child_environment, run
from .conftest import LOOPBACK_GUARD, REPO_ROOT, Azurite, TlsFiles

pytestmark = pytest.mark.e2e

TIMEOUT = 120.0


def readme_blocks() -> dict[str, str]:
    """``### title`` -> the first Python block under it, within the README's Integrations section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Integrations\n", 1)[1].split("\n## ", 1)[0]
    blocks: dict[str, str] = {}
    for part in section.split("\n### ")[1:]:
        title, _, body = part.partition("\n")
        found = re.search(r"```python\n(.*?)```", body, re.DOTALL)
        if found:
            blocks[title.strip()] = found.group(1)
    return blocks


BLOCKS = readme_blocks()


def test_every_integration_has_an_example() -> None:
    assert set(BLOCKS) == {
        "Storage: blobs, queues, tables",
        "Key Vault",
        "OpenAI-style token providers",
        "Plain `requests`",
    }


def run_block(
    title: str,
    emulator: Emulator,
    ca_paths: list[str],
    tmp_path: Path,
    extra: Mapping[str, str],
    prelude: str = "",
) -> str:
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text("".join(Path(path).read_text(encoding="utf-8") for path in ca_paths), encoding="utf-8")
    env = child_environment({**emulator.environ, **extra, "REQUESTS_CA_BUNDLE": str(bundle)})
    result = run(
        [sys.executable, "-c", LOOPBACK_GUARD + prelude + "\n" + BLOCKS[title]],
        cwd=tmp_path,
        env=env,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for token in emulator.issued_tokens():
        assert token not in result.stdout + result.stderr
    return result.stdout


def test_storage_example(
    azurite_queue: Azurite, azurite_table: Azurite, tls_files: TlsFiles, emulator: Emulator, tmp_path: Path
) -> None:
    out = run_block(
        "Storage: blobs, queues, tables",
        emulator,
        [tls_files.ca_path],
        tmp_path,
        {"QUEUE_ACCOUNT_URL": azurite_queue.account_url, "TABLE_ACCOUNT_URL": azurite_table.account_url},
    )

    assert out.strip() == "resize image 42 queued"
    assert emulator.tokens_issued == 1
    assert decode_jwt(emulator.issued_tokens()[0])["aud"] == "https://storage.azure.com"


def test_key_vault_example(vault_tls: Tls, emulator: Emulator, tmp_path: Path) -> None:
    host = f"msi-readme-{uuid.uuid4().hex[:8]}.vault.azure.net"
    vault = KeyVaultStandIn(vault_tls, emulator.tenant_id, vault_host=host)
    vault.secrets["db-password"] = ("1", "a sample value")
    # the vault's name answers 127.0.0.1 at the stand-in's port, in the example's process, like a hosts file entry
    prelude = f"""
import socket as _resolver_socket
_real_getaddrinfo = _resolver_socket.getaddrinfo
def _hosts_file(host, port, *args, **kwargs):
    if host == {host!r}:
        return [(_resolver_socket.AF_INET, _resolver_socket.SOCK_STREAM, 6, "", ("127.0.0.1", {vault.server.port}))]
    return _real_getaddrinfo(host, port, *args, **kwargs)
_resolver_socket.getaddrinfo = _hosts_file
"""
    try:
        out = run_block(
            "Key Vault", emulator, [vault_tls.ca_path], tmp_path, {"VAULT_URL": vault.vault_url}, prelude
        )
    finally:
        vault.stop()

    assert out.strip() == "a sample value"
    assert emulator.tokens_issued == 1
    assert vault.calls[0].bearer is None  # the challenge first
    assert vault.accepted == emulator.issued_tokens()


def test_token_provider_example(emulator: Emulator, tmp_path: Path) -> None:
    out = run_block("OpenAI-style token providers", emulator, [], tmp_path, {})

    assert out.startswith("a token for Azure AI services, ")
    assert out.split()[-2] == str(len(emulator.issued_tokens()[0]))
    assert [request.query["resource"] for request in emulator.requests] == [
        "https://cognitiveservices.azure.com"
    ]


def test_requests_example(emulator: Emulator, tmp_path: Path) -> None:
    def handle(call: Call) -> Answer:
        token = call.bearer
        if token is None or decode_jwt(token).get("aud") != "https://management.azure.com":
            return Answer(401, "", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Answer(200, {"value": []})

    tls = Tls()
    server = HttpsServer(tls, handle)
    try:
        out = run_block("Plain `requests`", emulator, [tls.ca_path], tmp_path, {"ARM_URL": server.url})
    finally:
        server.stop()
        tls.cleanup()

    assert out.strip() == "200"
    [call] = server.calls
    assert call.path == "/subscriptions" and call.query == {"api-version": "2022-12-01"}
    assert call.bearer == emulator.issued_tokens()[0]
