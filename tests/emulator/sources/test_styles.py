"""msi_credential/emulator/sources/_styles.py: the error bodies the endpoints share (OAuth, App Service, Service
Fabric), as each source answers an unknown identity, a fault without a body and its own refusals."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential.emulator import Fault

from ..http_calls import RESOURCE, call, token_request


def test_unknown_identity_is_not_found_in_each_source_shape(emulator_factory: Any) -> None:
    imds = emulator_factory("imds")
    app_service = emulator_factory("app_service")
    machine_learning = emulator_factory("machine_learning")

    imds_answer = token_request(imds, client_id="nope")
    app_answer = token_request(app_service, object_id="nope")
    ml_answer = token_request(machine_learning, clientid="nope")

    assert imds_answer.status == 400
    assert imds_answer.json() == {"error": "invalid_request", "error_description": "Identity not found"}
    assert app_answer.status == 400
    assert app_answer.json()["statusCode"] == 400
    assert app_answer.json()["message"] == "Unable to load the proper Managed Identity."
    assert app_answer.json()["correlationId"]
    assert ml_answer.status == 400 and ml_answer.json()["correlationId"]
    assert imds.tokens_issued == app_service.tokens_issued == machine_learning.tokens_issued == 0


@pytest.mark.parametrize(
    ("source", "shape"),
    [("imds", {"error", "error_description"}), ("app_service", {"statusCode", "message", "correlationId"})],
)
def test_fault_without_body_gets_the_source_error_shape(
    emulator_factory: Any, source: str, shape: set[str]
) -> None:
    emulator = emulator_factory(source)
    emulator.script(Fault(503))

    answer = token_request(emulator)

    assert answer.status == 503
    assert set(answer.json()) == shape


def test_service_fabric_errors_have_its_shape(emulator_factory: Any, tls_cert: tuple[str, str]) -> None:
    emulator = emulator_factory("service_fabric", tls_cert=tls_cert)
    good = {"api-version": "2020-05-01", "resource": RESOURCE}

    no_secret = call(emulator, query=good)
    wrong_secret = call(emulator, query=good, headers={"Secret": "wrong"})
    no_resource = call(emulator, query={"api-version": "2020-05-01"}, headers={"Secret": emulator.secret})
    bad_version = call(
        emulator, query={**good, "api-version": "2018-02-01"}, headers={"Secret": emulator.secret}
    )

    assert no_secret.status == wrong_secret.status == 401
    error = no_secret.json()["error"]
    assert error["code"] == "SecretHeaderNotFound"
    assert error["message"] == "Secret is not found in the request headers."
    assert error["correlationId"]
    assert b"wrong" not in wrong_secret.body
    assert no_resource.status == 400 and no_resource.json()["error"]["code"] == "ArgumentNullOrEmpty"
    assert bad_version.status == 400 and bad_version.json()["error"]["code"] == "InvalidApiVersion"
