"""msi_credential/emulator/sources/imds.py: IMDS's side of the wire (what the shared bodies of test_endpoint.py do
not say: the Metadata header it requires)."""

from __future__ import annotations

from typing import Any

from ..http_calls import RESOURCE, call


def test_imds_requires_the_metadata_header(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")

    answer = call(emulator, query={"api-version": "2018-02-01", "resource": RESOURCE})

    assert answer.status == 400
    assert answer.json() == {
        "error": "invalid_request",
        "error_description": "Required metadata header not specified",
    }
    assert len(emulator.requests) == 1  # rejected requests are recorded too
