"""Regression tests from review: proxies never carry a managed identity secret, deadlines hold from the first
byte, control characters in secrets, cache keys that follow the effective identity, use after close."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential, ManagedIdentityError
from msi_credential.emulator import Fault, decode_jwt

from .test_faults import RawServer, _read_request, raw_server  # noqa: F401 - fixture

SCOPE = "https://storage.azure.com/.default"


def _proxy_everything(monkeypatch: Any, port: int) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)


def test_service_fabric_never_goes_through_an_environment_proxy(
    face: Any, emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    emulator = emulator_factory("service_fabric")
    _proxy_everything(monkeypatch, unused_port)  # a proxy would skip the pin; here it would also refuse
    credential = face.credential(emulator)

    assert credential.get_token(SCOPE).token
    assert len(emulator.requests) == 1


async def test_supplied_aiohttp_transport_that_trusts_env_proxies_is_not_used_for_secrets(
    emulator_factory: Any, monkeypatch: Any, unused_port: int
) -> None:
    from azure.core.pipeline.transport import AioHttpTransport

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    emulator = emulator_factory("app_service")
    _proxy_everything(monkeypatch, unused_port)
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=AioHttpTransport()
    ) as credential:
        token = await credential.get_token(SCOPE)

    assert token.token
    assert len(emulator.requests) == 1


def test_trickling_headers_cannot_hold_the_caller_past_the_deadline(face: Any, raw_server: Any) -> None:  # noqa: F811
    """Headers that never end, one every 0.2 s: only the call's deadline (1.5 s) can end the call before the
    header count reaches http.client's limit of 100 (which would end it too, after 20 s)."""
    header_lines = [0]

    def trickle(connection: socket.socket) -> None:
        _read_request(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\n")
        while not server.stopping.wait(0.2):
            connection.sendall(b"X-Slow: 1\r\n")
            header_lines[0] += 1

    server = raw_server(trickle)
    environ = {
        "IDENTITY_ENDPOINT": f"http://127.0.0.1:{server.port}/msi/token",
        "IDENTITY_HEADER": "h-secret",
    }
    credential = face.credential(_environ=environ, _deadline=1.5, read_timeout=5, retry_total=0)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "endpoint_unreachable"
    assert header_lines[0] < 100  # the deadline ended the call, not the header limit


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"MSI_ENDPOINT": "http://127.0.0.1:9/MSI/auth", "MSI_SECRET": "TOP\nSECRET"}, "MSI_SECRET"),
        (
            {"IDENTITY_ENDPOINT": "http://127.0.0.1:9/msi/token", "IDENTITY_HEADER": "TOP\r\nSECRET"},
            "IDENTITY_HEADER",
        ),
    ],
)
def test_secret_with_control_characters_is_refused_before_any_socket(
    face: Any, environ: dict[str, str], variable: str, socket_guard: list[str]
) -> None:
    credential = face.credential(_environ=environ)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "invalid_secret"
    assert (
        variable in str(caught.value)
        and "SECRET\n" not in str(caught.value)
        and "TOP" not in str(caught.value)
    )


def test_arc_key_with_control_characters_is_refused(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("azure_arc")
    path = os.path.join(emulator.credential_kwargs["_arc_key_directory"], "bad.key")
    with open(path, "w") as handle:
        handle.write("key-part-one\nkey-part-two")
    emulator.script(Fault(401, b"", {"WWW-Authenticate": f"Basic realm={path}"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "arc_invalid_key_file"
    assert "key-part" not in str(caught.value)
    assert len(emulator.requests) == 1


def test_shared_cache_follows_the_client_id_taken_from_the_environment(emulator_factory: Any) -> None:
    from msi_credential.emulator import UserAssignedIdentity

    other = UserAssignedIdentity("0a0a0a0a-0000-0000-0000-000000000000", "0b0b0b0b-0000", "/r/x")
    emulator = emulator_factory("workload_identity", identities=[other])
    first = ManagedIdentityCredential(_environ=emulator.environ).get_token(SCOPE)
    second = ManagedIdentityCredential(
        _environ=dict(emulator.environ, AZURE_CLIENT_ID=other.client_id)
    ).get_token(SCOPE)

    assert decode_jwt(first.token)["appid"] != decode_jwt(second.token)["appid"] == other.client_id
    assert len(emulator.requests) == 2


def test_sync_credential_is_usable_after_close(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = ManagedIdentityCredential(_environ=emulator.environ, share_cache=False)
    credential.get_token(SCOPE)
    credential.close()

    assert credential.get_token("https://vault.azure.net/.default").token


def test_similar_aadsts_codes_are_not_read_as_invalid_resource(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(
        Fault(400, {"error": "invalid_request", "error_description": "AADSTS500012: something else"})
    )
    credential = face.credential(emulator)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.error_code == "identity_not_found"
