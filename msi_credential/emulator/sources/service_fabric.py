"""Service Fabric's side of the wire: https only, the secret in ``Secret``, api-version 2020-05-01 or the older
2019-07-01-preview, a user-assigned identity chosen by its object id in ``principalId`` (any other identity
parameter, such as ``client_id``, ignored: the application's default identity answers), nested error bodies and
``expires_on`` as a number."""

from __future__ import annotations

from msi_credential._engine.detection import IMDS_PATH
from msi_credential._engine.sources import service_fabric as engine
from msi_credential._source import ManagedIdentitySource

from ._endpoint import Answers, Expects, TokenEndpoint
from ._styles import SERVICE_FABRIC_ERRORS, expires_on_number


class ServiceFabric(TokenEndpoint):
    source = ManagedIdentitySource.SERVICE_FABRIC
    expects = Expects(
        IMDS_PATH,
        engine.API_VERSION,
        engine.SPEC.selectors.items(),
        older_api_versions=(engine.PREVIEW_API_VERSION,),
        scheme="https",
        secret_header="secret",
    )
    answers = Answers(SERVICE_FABRIC_ERRORS, expires_on_number)
    environment = dict(
        IDENTITY_ENDPOINT="url", IDENTITY_HEADER="secret", IDENTITY_SERVER_THUMBPRINT="thumbprint"
    )
