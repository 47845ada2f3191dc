"""msi_credential/_transport/common.py through both faces (from the former test_credential_common.py): a
supplied transport whose responses offer only text() or body() (azure-core's older responses, azure-identity's
test doubles) gets a token, within the one-mebibyte bound, and one that offers no way to read the body is a
typed error."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError

from ..faces.support import STORAGE, NoConnectionTransport


class _BodyOnlyResponse:
    """What azure-core's older response classes and test doubles offer: a status, headers and ``text()`` or
    ``body()`` (per ``offer``), no ``iter_raw()``, no ``close()``."""

    def __init__(self, request: Any, body: bytes, offer: str) -> None:
        self.request = request
        self.status_code = 200
        self.headers = {"Content-Type": "application/json"}
        self.content_type = "application/json"
        if offer == "text":
            self.text = lambda encoding=None: body.decode("utf-8")
        elif offer == "body":
            self.body = lambda: body


def _token_body() -> bytes:
    import json
    import time

    expires_on = int(time.time()) + 3600
    return json.dumps(
        {
            "access_token": "token-from-a-minimal-transport",
            "expires_in": "3600",
            "expires_on": str(expires_on),
            "resource": "https://storage.azure.com",
            "token_type": "Bearer",
        }
    ).encode()


def _minimal_response(request: Any, offer: str, body: bytes | None) -> Any:
    body = _token_body() if body is None else body
    if offer == "mock":  # azure-identity's own tests: a Mock with status_code, headers and a text lambda
        from unittest import mock

        text = body.decode()
        response = mock.Mock(status_code=200, headers={"content-type": "application/json"})
        response.text = lambda encoding=None: text
        return response
    return _BodyOnlyResponse(request, body, offer)


class MinimalTransport(NoConnectionTransport):
    """A sync transport whose responses offer what ``offer`` says (see ``_minimal_response``)."""

    def __init__(self, offer: str, body: bytes | None = None) -> None:
        self.offer = offer
        self.body = body

    def send(self, request: Any, **kwargs: Any) -> Any:
        return _minimal_response(request, self.offer, self.body)


def _minimal_async_transport(offer: str, body: bytes | None = None) -> Any:
    from azure.core.pipeline.transport import AsyncHttpTransport

    class MinimalAsyncTransport(AsyncHttpTransport):  # type: ignore[type-arg]
        async def __aenter__(self) -> MinimalAsyncTransport:
            return self

        async def __aexit__(self, *args: Any) -> None:
            pass

        async def open(self) -> None:
            pass

        async def close(self) -> None:
            pass

        async def send(self, request: Any, **kwargs: Any) -> Any:
            return _minimal_response(request, offer, body)

    return MinimalAsyncTransport()


@pytest.mark.parametrize("offer", ["text", "body", "mock"])
def test_supplied_transport_whose_responses_only_offer_text_or_body_gets_a_token(
    face: Any, offer: str
) -> None:
    transport = _minimal_async_transport(offer) if face.is_async else MinimalTransport(offer)
    credential = face.credential(transport=transport)

    assert credential.get_token(STORAGE).token == "token-from-a-minimal-transport"


def test_supplied_transport_whose_responses_offer_no_body_is_a_typed_error(face: Any) -> None:
    transport = _minimal_async_transport("nothing") if face.is_async else MinimalTransport("nothing")
    credential = face.credential(transport=transport)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "transport_unsupported"
    assert "_BodyOnlyResponse" in str(caught.value)
    assert "iter_raw()" in str(caught.value)


@pytest.mark.parametrize("offer", ["text", "body"])
def test_supplied_transport_body_only_answer_over_one_mebibyte_is_refused(face: Any, offer: str) -> None:
    body = b'{"access_token": "' + b"x" * (1024 * 1024) + b'", "expires_in": "3600"}'
    transport = _minimal_async_transport(offer, body) if face.is_async else MinimalTransport(offer, body)
    credential = face.credential(transport=transport)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "response_too_large"
