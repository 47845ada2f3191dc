"""Azure Machine Learning's side of the wire: the secret in ``secret``, ``clientid`` only, and the compute's default
identity (DEFAULT_IDENTITY_CLIENT_ID) named by its client id is the system identity."""

from __future__ import annotations

from collections.abc import Mapping

from msi_credential._engine.sources import machine_learning as engine
from msi_credential._source import ManagedIdentitySource

from .._wire import UserAssignedIdentity
from ._endpoint import Answers, Expects, TokenEndpoint
from ._styles import APP_SERVICE_ERRORS, expires_on_number


class MachineLearning(TokenEndpoint):
    source = ManagedIdentitySource.MACHINE_LEARNING
    expects = Expects("/MSI/auth", engine.API_VERSION, engine.SPEC.selectors.items(), secret_header="secret")
    answers = Answers(APP_SERVICE_ERRORS, expires_on_number)
    environment = dict(
        MSI_ENDPOINT="url", MSI_SECRET="secret", DEFAULT_IDENTITY_CLIENT_ID="default_client_id"
    )

    def identity(self, selectors: Mapping[str, str]) -> UserAssignedIdentity | None:
        default = self.emulator.default_client_id
        if default and [value.lower() for value in selectors.values()] == [default.lower()]:
            return self.emulator.system_identity
        return super().identity(selectors)
