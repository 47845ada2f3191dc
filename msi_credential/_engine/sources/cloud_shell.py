"""Azure Cloud Shell: a POST form; it takes no user-assigned identity (it would return the user's token)."""

from __future__ import annotations

from ..._source import ManagedIdentitySource
from ..detection import SourceConfig
from ..effects import Request
from ..identity import Identity
from ._spec import RequestParts, SourceSpec


def build(config: SourceConfig, identity: Identity, parts: RequestParts) -> Request:
    form = {"resource": parts.resource}
    for key, value in identity.extra:
        form.setdefault(key, value)
    return Request(
        "POST",
        config.endpoint,
        headers={"Metadata": "true", "Content-Type": "application/x-www-form-urlencoded"},
        form=form,
        connect_timeout=parts.connect_timeout,
        read_timeout=parts.read_timeout,
    )


SPEC = SourceSpec(ManagedIdentitySource.CLOUD_SHELL, {}, build, label="Cloud Shell managed identity endpoint")
