"""The error bodies and expiry fields that several endpoints share; a source module names the ones it uses."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from .._wire import Reply

# The error code of each kind of refusal: (OAuth style, Service Fabric style). App Service style has none.
CODES = {
    "bad_request": ("invalid_request", "BadRequest"),
    "not_found": ("not_found", "NotFound"),
    "method": ("method_not_allowed", "MethodNotAllowed"),
    "secret": ("unauthorized_client", "SecretHeaderNotFound"),
    "api_version": ("invalid_request", "InvalidApiVersion"),
    "resource": ("invalid_request", "ArgumentNullOrEmpty"),
    "identity": ("invalid_request", "ManagedIdentityNotFound"),
    "challenge": ("unauthorized", "Unauthorized"),
    "too_large": ("invalid_request", "RequestEntityTooLarge"),
}


def phrase(status: int) -> str:
    """The reason phrase of ``status`` ("HTTP <n>" for a status without one)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


def oauth_code(status: int) -> str:
    """An OAuth ``error`` code for a scripted status without a body: its reason phrase in snake case."""
    code = "invalid_request" if status == 400 else phrase(status).lower().replace(" ", "_").replace("-", "_")
    return code or f"http_{status}"


class ErrorStyle:
    """How a family of endpoints words an error; ``kind`` is a key of ``CODES``."""

    identity_not_found: tuple[int, str] = (400, "Identity not found")

    def body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def default_body(self, status: int) -> dict[str, Any]:
        """A plausible error body for a scripted status without a body."""
        return self.body(status, "bad_request", phrase(status))

    def reply(self, status: int, kind: str, message: str, headers: Mapping[str, str] | None = None) -> Reply:
        return Reply(status, self.body(status, kind, message), dict(headers or {}))

    def secret_refused(self, header: str, given: str | None) -> Reply:
        """The answer to a missing (401) or wrong (403) secret header."""
        status = 401 if given is None else 403
        return self.reply(status, "secret", f"Unauthorized: {header} header missing or invalid")

    def not_found(self) -> Reply:
        """The answer for an identity selector that matches no assigned identity."""
        status, message = self.identity_not_found
        return self.reply(status, "identity", message)


class OAuthErrors(ErrorStyle):
    """IMDS, Azure Arc, Cloud Shell: ``{"error": code, "error_description": message}``."""

    def body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"error": CODES[kind][0], "error_description": message}

    def default_body(self, status: int) -> dict[str, Any]:
        return {"error": oauth_code(status), "error_description": phrase(status)}


class AppServiceErrors(ErrorStyle):
    """App Service, Machine Learning: ``{"statusCode": n, "message": m, "correlationId": id}``."""

    identity_not_found = (400, "Unable to load the proper Managed Identity.")

    def body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())}


class ServiceFabricErrors(ErrorStyle):
    """Service Fabric: ``{"error": {"correlationId": id, "code": c, "message": m}}``."""

    identity_not_found = (404, "Managed identity not found.")

    def body(self, status: int, kind: str, message: str) -> dict[str, Any]:
        return self._body(CODES[kind][1], message)

    def default_body(self, status: int) -> dict[str, Any]:
        text = phrase(status)
        return self._body(
            "".join(word.capitalize() for word in text.replace("-", " ").split()) or f"Http{status}", text
        )

    def secret_refused(self, header: str, given: str | None) -> Reply:
        return self.reply(401, "secret", "Secret is not found in the request headers.")

    @staticmethod
    def _body(code: str, message: str) -> dict[str, Any]:
        return {"error": {"correlationId": str(uuid.uuid4()), "code": code, "message": message}}


OAUTH_ERRORS = OAuthErrors()
APP_SERVICE_ERRORS = AppServiceErrors()
SERVICE_FABRIC_ERRORS = ServiceFabricErrors()


# How the answer states the token's expiry, given the time it was minted and its lifetime in seconds.


def oauth_expiry(now: int, lifetime: int) -> dict[str, Any]:
    """String times with expires_in and not_before (IMDS, Azure Arc, Cloud Shell)."""
    return {
        "expires_in": str(lifetime),
        "expires_on": str(now + lifetime),
        "ext_expires_in": str(lifetime),
        "not_before": str(now - 60),
    }


def expires_on_text(now: int, lifetime: int) -> dict[str, Any]:
    """``expires_on`` only, as a string of epoch seconds (App Service)."""
    return {"expires_on": str(now + lifetime)}


def expires_on_number(now: int, lifetime: int) -> dict[str, Any]:
    """``expires_on`` only, as a JSON number of epoch seconds (Service Fabric, Machine Learning)."""
    return {"expires_on": now + lifetime}
