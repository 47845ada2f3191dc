"""The async face: ``from msi_credential.aio import ManagedIdentityCredential``."""

from ._credential import ManagedIdentityCredential

__all__ = ["ManagedIdentityCredential"]
