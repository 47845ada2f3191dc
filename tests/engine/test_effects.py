"""msi_credential/_engine/effects.py: a Request's repr hides its secrets, called directly."""

from __future__ import annotations

from msi_credential._engine.effects import Request

from .sources.support import ARC_URL


def test_request_repr_hides_authorization_added_later() -> None:
    request = Request("GET", ARC_URL, headers={"Metadata": "true", "Authorization": "Basic c2VjcmV0LWtleQ"})
    assert "c2VjcmV0LWtleQ" not in repr(request)
