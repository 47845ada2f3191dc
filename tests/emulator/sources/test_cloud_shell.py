"""msi_credential/emulator/sources/cloud_shell.py: Cloud Shell's side of the wire (a form POST, no user-assigned
identity)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from ..http_calls import IDENTITY, RESOURCE, call, token_request


def test_cloud_shell_refuses_identity_parameters(emulator_factory: Any) -> None:
    emulator = emulator_factory("cloud_shell")

    answer = token_request(emulator, client_id=IDENTITY.client_id)

    assert answer.status == 400
    assert emulator.tokens_issued == 0


def test_cloud_shell_requires_a_form_post(emulator_factory: Any) -> None:
    emulator = emulator_factory("cloud_shell")
    form = urlencode({"resource": RESOURCE}).encode()

    get = call(emulator, query={"resource": RESOURCE}, headers={"Metadata": "true"})
    json_body = call(
        emulator, "POST", headers={"Metadata": "true", "Content-Type": "application/json"}, body=b"{}"
    )
    no_metadata = call(
        emulator, "POST", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=form
    )

    assert get.status == 405 and get.headers["allow"] == "POST"
    assert json_body.status == 400
    assert no_metadata.status == 400
    assert emulator.tokens_issued == 0
