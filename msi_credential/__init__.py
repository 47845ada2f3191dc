"""Azure managed identity tokens for azure-* SDK clients, in every hosting environment."""

from ._credential import ManagedIdentityCredential
from ._errors import CredentialUnavailableError, ManagedIdentityError
from ._source import ManagedIdentitySource
from ._version import VERSION

__version__ = VERSION
__all__ = [
    "CredentialUnavailableError",
    "ManagedIdentityCredential",
    "ManagedIdentityError",
    "ManagedIdentitySource",
]
