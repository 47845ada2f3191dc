"""Cloud Shell's side of the wire: a POST form with ``Metadata: true``; user-assigned identities are refused."""

from __future__ import annotations

from msi_credential._source import ManagedIdentitySource

from ._endpoint import Expects, TokenEndpoint

_USER_ASSIGNED = ("client_id", "object_id", "msi_res_id", "mi_res_id")


class CloudShell(TokenEndpoint):
    source = ManagedIdentitySource.CLOUD_SHELL
    expects = Expects("/oauth2/token", method="POST", metadata=True, form=True, rejected=_USER_ASSIGNED)
    environment = {"MSI_ENDPOINT": "url"}
