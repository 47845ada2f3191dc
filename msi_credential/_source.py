"""The hosting environments a managed identity token can come from."""

from __future__ import annotations

from enum import Enum


class ManagedIdentitySource(str, Enum):
    """Where the credential gets its tokens, decided once at construction."""

    IMDS = "imds"
    APP_SERVICE = "app_service"
    AZURE_ARC = "azure_arc"
    CLOUD_SHELL = "cloud_shell"
    SERVICE_FABRIC = "service_fabric"
    MACHINE_LEARNING = "machine_learning"
    WORKLOAD_IDENTITY = "workload_identity"

    def __str__(self) -> str:
        return self.value
