"""The async face: ``from msi_credential.aio import ManagedIdentityCredential, get_bearer_token_provider``."""

from ._credential import ManagedIdentityCredential
from ._integrations import get_bearer_token_provider

__all__ = ["ManagedIdentityCredential", "get_bearer_token_provider"]
