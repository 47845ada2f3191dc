"""Service Fabric's side of the wire: https only, the secret in ``Secret``, runtime identity parameters ignored,
nested error bodies and ``expires_on`` as a number."""

from __future__ import annotations

from msi_credential._engine.detection import IMDS_PATH
from msi_credential._engine.sources import service_fabric as engine
from msi_credential._source import ManagedIdentitySource

from ._endpoint import Answers, Expects, TokenEndpoint
from ._styles import SERVICE_FABRIC_ERRORS, expires_on_number


class ServiceFabric(TokenEndpoint):
    source = ManagedIdentitySource.SERVICE_FABRIC
    # no selectors: the endpoint ignores runtime identity parameters
    expects = Expects(IMDS_PATH, engine.API_VERSION, scheme="https", secret_header="secret")
    answers = Answers(SERVICE_FABRIC_ERRORS, expires_on_number)
    environment = dict(
        IDENTITY_ENDPOINT="url", IDENTITY_HEADER="secret", IDENTITY_SERVER_THUMBPRINT="thumbprint"
    )
