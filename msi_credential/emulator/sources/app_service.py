"""App Service's side of the wire (also Functions and Container Apps): the secret in ``X-IDENTITY-HEADER``, errors
with ``statusCode``, ``expires_on`` as a string and the identity's client id in the answer."""

from __future__ import annotations

from msi_credential._engine.sources import app_service as engine
from msi_credential._source import ManagedIdentitySource

from ._endpoint import Answers, Expects, TokenEndpoint
from ._styles import APP_SERVICE_ERRORS, expires_on_text


class AppService(TokenEndpoint):
    source = ManagedIdentitySource.APP_SERVICE
    expects = Expects(
        "/msi/token", engine.API_VERSION, engine.SPEC.selectors.items(), secret_header="x-identity-header"
    )
    answers = Answers(APP_SERVICE_ERRORS, expires_on_text, client_id=True)
    environment = {"IDENTITY_ENDPOINT": "url", "IDENTITY_HEADER": "secret"}
