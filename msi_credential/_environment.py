"""Which managed identity source this environment selects, without a credential (msal's get_managed_identity_source)."""

from __future__ import annotations

import os
import sys

from ._source import ManagedIdentitySource


def get_managed_identity_source() -> ManagedIdentitySource:
    """The source ``ManagedIdentityCredential()`` would select here, from the environment variables and the Azure
    Arc agent's file, first match wins; IMDS when nothing else matches. Sends nothing and builds no credential.

    A configuration that a credential would refuse (e.g. ``invalid_endpoint``) still names its source: the error
    comes at the credential's first ``get_token``.
    """
    from ._engine.detection import detect

    return detect(dict(os.environ), platform=sys.platform, path_exists=os.path.exists).source
