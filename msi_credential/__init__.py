"""Azure managed identity tokens for azure-* SDK clients, in every hosting environment.

Names load on first use: ``import msi_credential`` stays cheap, and azure-core loads when a credential is built
or an error class is touched.
"""

from typing import TYPE_CHECKING, Any

from ._source import ManagedIdentitySource
from ._version import VERSION

if TYPE_CHECKING:
    from ._credential import ManagedIdentityCredential
    from ._environment import get_managed_identity_source
    from ._errors import CredentialUnavailableError, ManagedIdentityError
    from ._integrations import ManagedIdentityAuth, get_bearer_token_provider

__version__ = VERSION
__all__ = [
    "CredentialUnavailableError",
    "ManagedIdentityAuth",
    "ManagedIdentityCredential",
    "ManagedIdentityError",
    "ManagedIdentitySource",
    "get_bearer_token_provider",
    "get_managed_identity_source",
]

_LAZY = {
    "ManagedIdentityCredential": "._credential",
    "ManagedIdentityError": "._errors",
    "CredentialUnavailableError": "._errors",
    "ManagedIdentityAuth": "._integrations",
    "get_bearer_token_provider": "._integrations",
    "get_managed_identity_source": "._environment",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'msi_credential' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
