"""A CAE claims challenge through azure-core's BearerTokenCredentialPolicy, sync and async.

A small local HTTPS resource answers the first request with 401 and an ``insufficient_claims`` challenge; the
policy asks our credential again with the claims, our credential bypasses its cache and gets a new token from
the emulator, and the retried request, carrying the new token, succeeds.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from msi_credential.emulator import Emulator

from .conftest import TlsFiles, async_credential, sync_credential

pytestmark = pytest.mark.e2e

SCOPE = "https://resource.example/.default"
CLAIMS = json.dumps(
    {"access_token": {"nbf": {"essential": True, "value": "1726077595"}}}, separators=(",", ":")
)
CHALLENGE = (
    'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", '
    f'error="insufficient_claims", claims="{base64.b64encode(CLAIMS.encode()).decode()}"'
)
SOURCES = ["imds", "app_service"]


class ChallengingResource:
    """HTTPS on 127.0.0.1: the first request gets a claims challenge, then 200 for any other bearer token."""

    def __init__(self, tls: TlsFiles) -> None:
        self.authorizations: list[str] = []
        self._lock = threading.Lock()
        resource = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                status, headers, body = resource._answer(self.headers.get("Authorization", ""))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls.cert_path, tls.key_path)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        # The handshake happens in the connection's own thread (first read), not in the accept loop.
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}/data"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05})
        self._thread.daemon = True

    def _answer(self, authorization: str) -> tuple[int, dict[str, str], bytes]:
        with self._lock:
            self.authorizations.append(authorization)
            first = self.authorizations[0]
            if len(self.authorizations) == 1:
                return 401, {"WWW-Authenticate": CHALLENGE}, b'{"error":"insufficient_claims"}'
        if authorization.startswith("Bearer ") and authorization != first:
            return 200, {}, b'{"ok":true}'
        return 401, {}, b'{"error":"same token again"}'

    def __enter__(self) -> ChallengingResource:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def resource(tls_files: TlsFiles) -> Iterator[ChallengingResource]:
    with ChallengingResource(tls_files) as running:
        yield running


@pytest.fixture(params=SOURCES)
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    with Emulator(request.param) as running:
        yield running


def assert_claims_round(
    emulator: Emulator, resource: ChallengingResource, calls: list[dict[str, Any]], status: int
) -> None:
    first, second = emulator.issued_tokens()  # exactly two: the claims request bypassed the cached token
    assert status == 200
    assert resource.authorizations == [f"Bearer {first}", f"Bearer {second}"]
    assert [call.get("claims") for call in calls] == [None, CLAIMS]
    assert all(call.get("enable_cae") for call in calls)
    token_requests = [request for request in emulator.requests if "resource" in request.query]
    assert len(token_requests) == 2
    assert all("claims" not in request.query for request in token_requests)  # claims never reach the endpoint


def test_sync_claims_challenge(
    emulator: Emulator, resource: ChallengingResource, tls_files: TlsFiles
) -> None:
    from azure.core import PipelineClient
    from azure.core.pipeline.policies import BearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    calls: list[dict[str, Any]] = []
    with sync_credential(emulator, retry_total=0) as credential:
        original = credential.get_token_info

        def spy(*scopes: str, options: Any = None) -> Any:
            calls.append(dict(options or {}))
            return original(*scopes, options=options)

        credential.get_token_info = spy
        policy = BearerTokenCredentialPolicy(credential, SCOPE, enable_cae=True)
        client: PipelineClient[HttpRequest, Any] = PipelineClient(
            resource.url, policies=[policy], connection_verify=tls_files.ca_path, connection_timeout=5
        )
        with client:
            response = client.send_request(HttpRequest("GET", resource.url))
        assert_claims_round(emulator, resource, calls, response.status_code)
        # The token got with claims replaced the cached one: a plain request is served from the cache.
        assert original(SCOPE).token == emulator.issued_tokens()[1]
        assert emulator.tokens_issued == 2


async def test_async_claims_challenge(
    emulator: Emulator, resource: ChallengingResource, tls_files: TlsFiles
) -> None:
    from azure.core import AsyncPipelineClient
    from azure.core.pipeline.policies import AsyncBearerTokenCredentialPolicy
    from azure.core.rest import HttpRequest

    calls: list[dict[str, Any]] = []
    async with async_credential(emulator, retry_total=0) as credential:
        original = credential.get_token_info

        async def spy(*scopes: str, options: Any = None) -> Any:
            calls.append(dict(options or {}))
            return await original(*scopes, options=options)

        credential.get_token_info = spy
        policy = AsyncBearerTokenCredentialPolicy(credential, SCOPE, enable_cae=True)
        client: AsyncPipelineClient[HttpRequest, Any] = AsyncPipelineClient(
            resource.url, policies=[policy], connection_verify=tls_files.ca_path, connection_timeout=5
        )
        async with client:
            response = await client.send_request(HttpRequest("GET", resource.url))
        assert_claims_round(emulator, resource, calls, response.status_code)
        assert (await original(SCOPE)).token == emulator.issued_tokens()[1]
        assert emulator.tokens_issued == 2
