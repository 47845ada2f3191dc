"""One module per hosting environment; this table is the only place that lists them."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from . import (
    app_service,
    azure_arc,
    cloud_shell,
    imds,
    machine_learning,
    service_fabric,
    workload_identity,
)
from ._spec import Absence, ErrorAnswer, ErrorMeaning, RequestParts, SourceSpec

SPECS: dict[ManagedIdentitySource, SourceSpec] = {
    spec.source: spec
    for spec in (
        imds.SPEC,
        app_service.SPEC,
        azure_arc.SPEC,
        cloud_shell.SPEC,
        service_fabric.SPEC,
        machine_learning.SPEC,
        workload_identity.SPEC,
    )
}

__all__ = ["SPECS", "Absence", "ErrorAnswer", "ErrorMeaning", "RequestParts", "SourceSpec"]
