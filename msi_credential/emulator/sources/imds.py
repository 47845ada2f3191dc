"""IMDS's side of the wire: GET with ``Metadata: true``, OAuth errors, string times and the identity's client id."""

from __future__ import annotations

from msi_credential._engine.detection import IMDS_PATH
from msi_credential._engine.sources import imds as engine
from msi_credential._source import ManagedIdentitySource

from ._endpoint import Answers, Expects, TokenEndpoint


class Imds(TokenEndpoint):
    source = ManagedIdentitySource.IMDS
    expects = Expects(IMDS_PATH, engine.API_VERSION, engine.SPEC.selectors.items(), metadata=True)
    answers = Answers(client_id=True)
    environment = {"AZURE_POD_IDENTITY_AUTHORITY_HOST": "base"}
