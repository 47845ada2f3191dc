"""Typed errors: they carry their evidence (code, status, correlation id, source) and never a secret."""

from __future__ import annotations

import sys
from typing import Any, Optional

from azure.core.exceptions import ClientAuthenticationError

from ._source import ManagedIdentitySource


class ManagedIdentityError(ClientAuthenticationError):
    """The managed identity endpoint was reached and refused, or answered with something that is not a token."""

    def __init__(
        self,
        message: str,
        *,
        error_code: str,
        status_code: Optional[int] = None,
        correlation_id: Optional[str] = None,
        source: Optional[ManagedIdentitySource] = None,
        client_request_id: Optional[str] = None,
    ) -> None:
        super().__init__(message=message)
        self.error_code = error_code
        # ClientAuthenticationError declares status_code; ours is the managed identity endpoint's status.
        self.status_code = status_code
        self.correlation_id = correlation_id
        self.source = source
        # The x-ms-client-request-id of the request this error is about (the host's logs name it).
        self.client_request_id = client_request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(error_code={self.error_code!r}, "
            f"status_code={self.status_code!r}, source={self.source!r}, message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # The azure-identity interop class is made at run time: pickle by kind, rebuild through the factory.
        kind = "unavailable" if isinstance(self, CredentialUnavailableError) else "failed"
        return (
            _rebuild,
            (
                kind,
                self.message,
                self.error_code,
                self.status_code,
                self.correlation_id,
                self.source,
                self.client_request_id,
            ),
        )


class CredentialUnavailableError(ManagedIdentityError):
    """Managed identity is not available here: a credential chain should move on to its next credential."""


def _rebuild(
    kind: str,
    message: str,
    error_code: str,
    status_code: Optional[int],
    correlation_id: Optional[str],
    source: Optional[ManagedIdentitySource],
    client_request_id: Optional[str] = None,
) -> ManagedIdentityError:
    factory = unavailable if kind == "unavailable" else failed
    return factory(
        message,
        error_code=error_code,
        status_code=status_code,
        correlation_id=correlation_id,
        source=source,
        client_request_id=client_request_id,
    )


def with_client_request_id(error: ManagedIdentityError, client_request_id: str) -> ManagedIdentityError:
    """Name the request an error is about, in its message (next to the server's correlation id) and attribute."""
    if error.client_request_id is None:
        error.client_request_id = client_request_id
        error.message = f"{error.message} [x-ms-client-request-id {client_request_id}]"
        error.args = (error.message, *error.args[1:])
    return error


_interop_class: Optional[type[CredentialUnavailableError]] = None


def _unavailable_class() -> type[CredentialUnavailableError]:
    """Our unavailable class, also an azure-identity CredentialUnavailableError when that package is in use.

    azure-identity's credential chains move on only past their own class. We never import azure-identity: if the
    application has imported it, it is in sys.modules, and the raised error derives from both classes.
    """
    global _interop_class
    identity = sys.modules.get("azure.identity")
    if identity is None:
        return CredentialUnavailableError
    if _interop_class is None:
        foreign = getattr(identity, "CredentialUnavailableError", None)
        if not isinstance(foreign, type) or not issubclass(foreign, ClientAuthenticationError):
            return CredentialUnavailableError
        _interop_class = type(
            "CredentialUnavailableError",
            (CredentialUnavailableError, foreign),
            {"__module__": __name__, "__qualname__": "CredentialUnavailableError"},
        )
    return _interop_class


def failed(
    message: str,
    *,
    error_code: str,
    status_code: Optional[int] = None,
    correlation_id: Optional[str] = None,
    source: Optional[ManagedIdentitySource] = None,
    client_request_id: Optional[str] = None,
) -> ManagedIdentityError:
    """A ManagedIdentityError: the endpoint refused or answered with something unusable."""
    return ManagedIdentityError(
        message,
        error_code=error_code,
        status_code=status_code,
        correlation_id=correlation_id,
        source=source,
        client_request_id=client_request_id,
    )


def unavailable(
    message: str,
    *,
    error_code: str,
    status_code: Optional[int] = None,
    correlation_id: Optional[str] = None,
    source: Optional[ManagedIdentitySource] = None,
    client_request_id: Optional[str] = None,
) -> CredentialUnavailableError:
    """A CredentialUnavailableError (interoperable with azure-identity's chains when it is imported)."""
    return _unavailable_class()(
        message,
        error_code=error_code,
        status_code=status_code,
        correlation_id=correlation_id,
        source=source,
        client_request_id=client_request_id,
    )
