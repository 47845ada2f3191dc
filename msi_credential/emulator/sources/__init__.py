"""One module per emulated source, speaking that source's side of the wire; this table is the only place that lists
them. Adding a source to the emulator: a module here with its ``TokenEndpoint`` subclass, and its row below."""

from __future__ import annotations

from msi_credential._source import ManagedIdentitySource

from ._endpoint import TokenEndpoint
from .app_service import AppService
from .azure_arc import AzureArc
from .cloud_shell import CloudShell
from .imds import Imds
from .machine_learning import MachineLearning
from .service_fabric import ServiceFabric
from .token_proxy import TokenProxy
from .workload_identity import WorkloadIdentity

ENDPOINTS: dict[ManagedIdentitySource, type[TokenEndpoint]] = {
    endpoint.source: endpoint
    for endpoint in (Imds, AppService, AzureArc, CloudShell, ServiceFabric, MachineLearning, WorkloadIdentity)
}

__all__ = ["ENDPOINTS", "TokenEndpoint", "TokenProxy", "WorkloadIdentity"]
