"""What the face tests and the tests of the engine and the transport through the faces share: transports that open
no connection, the secrets an emulated source holds, and the error a failing get_token raises."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline.transport import HttpTransport

from msi_credential import ManagedIdentityError

STORAGE = "https://storage.azure.com/.default"


class NoConnectionTransport(HttpTransport):  # type: ignore[type-arg]
    """A sync transport that opens no connection (no socket at all): a subclass says what ``send`` does."""

    def __enter__(self) -> NoConnectionTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass


class RefusingTransport(NoConnectionTransport):
    """Stands in for a network where nothing answers at the IMDS address (no socket is opened)."""

    def __init__(self) -> None:
        self.requests: list[Any] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.requests.append((request, kwargs))
        raise ServiceRequestError("connection refused")


def secrets_of(emulator: Any) -> list[str]:
    """The identity header / MSI secret, the Arc keys the credential sent and every token the emulator issued."""
    values = [emulator.environ.get(name, "") for name in ("IDENTITY_HEADER", "MSI_SECRET")]
    for request in emulator.requests:  # the Arc keys the credential sent
        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Basic "):
            values.append(authorization[len("Basic ") :])
    values.extend(emulator.issued_tokens())
    return [value for value in values if value]


def failure(face: Any, emulator: Any, **kwargs: Any) -> ManagedIdentityError:
    """The error get_token raises on a credential of ``face`` pointed at ``emulator``."""
    with pytest.raises(ManagedIdentityError) as caught:
        face.credential(emulator, **kwargs).get_token(STORAGE)
    return caught.value
