"""msi_credential/emulator/sources/workload_identity.py: Entra's v2.0 token endpoint as workload identity uses it,
the federated token file (written, rotated, compared, removed), Entra's errors, https and the discovery document."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlencode

import pytest

from msi_credential.emulator import Emulator, Fault, decode_jwt

from ..http_calls import (
    IDENTITY,
    RESOURCE,
    TENANT,
    assert_entra_error,
    call,
    verified_call,
    wi_form,
    wi_request,
)


def test_workload_identity_environ_and_federated_token_file(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")
    environ = emulator.environ
    path = emulator.federated_token_file

    assert set(environ) == {
        "AZURE_FEDERATED_TOKEN_FILE",
        "AZURE_TENANT_ID",
        "AZURE_CLIENT_ID",
        "AZURE_AUTHORITY_HOST",
    }
    assert environ["AZURE_FEDERATED_TOKEN_FILE"] == path
    assert environ["AZURE_TENANT_ID"] == TENANT
    assert environ["AZURE_CLIENT_ID"] == emulator.system_identity.client_id
    assert environ["AZURE_AUTHORITY_HOST"].startswith("http://127.0.0.1:")
    assert emulator.url == f"{environ['AZURE_AUTHORITY_HOST']}/{TENANT}/oauth2/v2.0/token"
    assert emulator.credential_kwargs == {}
    assert os.path.isabs(path) and os.path.basename(path) == "azure-identity-token"
    assert Path(path).read_text() == emulator.assertion
    claims = decode_jwt(emulator.assertion)  # it looks like a projected service account token
    assert claims["aud"] == ["api://AzureADTokenExchange"]
    assert claims["sub"].startswith("system:serviceaccount:")
    assert claims["exp"] > claims["iat"]


def test_workload_identity_issues_an_entra_token_for_the_scope(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity", token_lifetime=1800)

    answer = wi_request(emulator)

    assert answer.status == 200, answer.body
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == body["ext_expires_in"] == 1800
    claims = decode_jwt(body["access_token"])
    assert claims["aud"] == RESOURCE
    assert claims["appid"] == emulator.system_identity.client_id
    assert claims["oid"] == emulator.system_identity.object_id
    assert claims["iss"] == f"https://sts.windows.net/{TENANT}/"
    assert claims["ver"] == "1.0"
    assert emulator.issued_tokens() == [body["access_token"]]
    [request] = emulator.requests
    assert request.form == wi_form(emulator)


def test_workload_identity_accepts_a_configured_identity_and_any_tenant_spelling(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("workload_identity", identities=[IDENTITY])

    answer = wi_request(
        emulator,
        wi_form(emulator, client_id=IDENTITY.client_id.upper(), scope="api://my-app/.default"),
        path=f"/{TENANT.upper()}/oauth2/v2.0/token",
    )

    assert answer.status == 200, answer.body
    claims = decode_jwt(answer.json()["access_token"])
    assert claims["appid"] == IDENTITY.client_id
    assert claims["oid"] == IDENTITY.object_id
    assert claims["aud"] == "api://my-app"


def test_workload_identity_unknown_client_id_is_unauthorized_client(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")

    answer = wi_request(emulator, wi_form(emulator, client_id="33333333-3333-3333-3333-333333333333"))

    assert_entra_error(answer, 400, "unauthorized_client", 700016)
    assert "33333333-3333-3333-3333-333333333333" in answer.json()["error_description"]
    assert emulator.tokens_issued == 0


def test_workload_identity_rotation_refuses_the_old_assertion(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")
    old = emulator.assertion

    new = emulator.rotate_assertion()

    assert new != old and new == emulator.assertion
    assert Path(emulator.federated_token_file).read_text() == new
    stale = wi_request(emulator, wi_form(emulator, client_assertion=old))
    assert_entra_error(stale, 400, "invalid_client", 700024)
    assert old not in stale.body.decode()
    assert wi_request(emulator, wi_form(emulator, client_assertion=new)).status == 200
    assert [name for name in os.listdir(os.path.dirname(emulator.federated_token_file))] == [
        "azure-identity-token"
    ]


def test_workload_identity_compares_with_what_the_file_holds(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")
    path = Path(emulator.federated_token_file)

    unknown = wi_request(emulator, wi_form(emulator, client_assertion="eyJ.forged.assertion"))
    path.write_text("  my-own-assertion\n")
    own = wi_request(emulator, wi_form(emulator, client_assertion="my-own-assertion"))
    path.write_text("")
    emptied = wi_request(emulator, wi_form(emulator, client_assertion="my-own-assertion"))

    assert_entra_error(unknown, 400, "invalid_client", 70021)
    assert b"forged" not in unknown.body
    assert own.status == 200
    assert_entra_error(emptied, 400, "invalid_client", 70021)


@pytest.mark.parametrize(
    ("changes", "status", "error", "number"),
    [
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type", 70003),
        ({"grant_type": None}, 400, "invalid_request", 900144),
        ({"client_id": None}, 400, "invalid_request", 900144),
        ({"scope": None}, 400, "invalid_request", 900144),
        ({"scope": RESOURCE}, 400, "invalid_scope", 1002012),
        ({"scope": "/.default"}, 400, "invalid_scope", 1002012),
        ({"scope": f"{RESOURCE}/.default https://vault.azure.net/.default"}, 400, "invalid_scope", 1002012),
        ({"client_assertion": None}, 401, "invalid_client", 7000218),
        ({"client_assertion": ""}, 401, "invalid_client", 7000218),
        ({"client_assertion_type": None}, 400, "invalid_request", 900144),
        (
            {"client_assertion_type": "urn:ietf:params:oauth:grant-type:jwt-bearer"},
            400,
            "invalid_request",
            90100,
        ),
    ],
    ids=[
        "grant-type-wrong",
        "grant-type-missing",
        "client-id-missing",
        "scope-missing",
        "scope-without-default",
        "scope-empty-resource",
        "two-scopes",
        "assertion-missing",
        "assertion-empty",
        "assertion-type-missing",
        "assertion-type-wrong",
    ],
)
def test_workload_identity_checks_the_form(
    emulator_factory: Any, changes: dict[str, Optional[str]], status: int, error: str, number: int
) -> None:
    emulator = emulator_factory("workload_identity")

    answer = wi_request(emulator, wi_form(emulator, **changes))

    assert_entra_error(answer, status, error, number)
    assert emulator.assertion not in answer.body.decode()
    assert emulator.tokens_issued == 0


def test_workload_identity_checks_path_tenant_method_and_content_type(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")
    form = wi_form(emulator)

    other_tenant = wi_request(emulator, form, path="/contoso.example/oauth2/v2.0/token")
    v1_path = wi_request(emulator, form, path=f"/{TENANT}/oauth2/token")
    get = call(emulator, "GET", query=form)
    json_body = call(
        emulator, "POST", headers={"Content-Type": "application/json"}, body=json.dumps(form).encode()
    )

    assert_entra_error(other_tenant, 400, "invalid_request", 90002)
    assert "contoso.example" in other_tenant.json()["error_description"]
    assert v1_path.status == 404
    assert_entra_error(get, 400, "invalid_request", 900561)
    assert_entra_error(json_body, 400, "invalid_request", 900144)
    assert emulator.tokens_issued == 0


def test_workload_identity_scripted_fault_has_the_entra_shape(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")
    emulator.script(Fault(503), Fault(404))

    transient = wi_request(emulator)
    plain = wi_request(emulator)

    assert_entra_error(transient, 503, "temporarily_unavailable", 90033)
    assert_entra_error(plain, 404, "not_found", None)
    assert wi_request(emulator).status == 200


def test_workload_identity_assertion_is_in_no_repr_or_log(
    emulator_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="msi_credential.emulator")
    emulator = emulator_factory("workload_identity")
    assertion = emulator.assertion

    wi_request(emulator)
    wi_request(emulator, wi_form(emulator, client_id="nobody"))

    texts = [record.getMessage() for record in caplog.records]
    texts += [repr(emulator), str(emulator)]
    texts += [repr(request) for request in emulator.requests] + [
        str(request) for request in emulator.requests
    ]
    assert any("/oauth2/v2.0/token" in text and "200" in text for text in texts)
    assert not any(assertion in text for text in texts)


def test_workload_identity_file_lifecycle(tmp_path: Path) -> None:
    emulator = Emulator("workload_identity")
    with pytest.raises(RuntimeError):
        _ = emulator.federated_token_file
    with pytest.raises(RuntimeError):
        emulator.rotate_assertion()
    with pytest.raises(RuntimeError):
        _ = Emulator("imds").federated_token_file

    with emulator:
        first = emulator.federated_token_file
        assert Path(first).is_file()
    assert not Path(first).exists()
    assert not Path(first).parent.exists()

    with emulator:  # a restart writes a fresh file
        second = emulator.federated_token_file
        assert Path(second).is_file()
        assert wi_request(emulator).status == 200
    assert not Path(second).exists()


def test_workload_identity_over_https_with_discovery_and_case_insensitive_paths() -> None:
    with Emulator("workload_identity", tls=True) as emulator:
        environ = emulator.environ
        assert environ["AZURE_AUTHORITY_HOST"].startswith("https://127.0.0.1:")
        tenant = emulator.tenant_id
        status, document = verified_call(emulator, f"/{tenant}/v2.0/.well-known/openid-configuration", {}, {})
        assert status == 200
        assert document["token_endpoint"] == f"{environ['AZURE_AUTHORITY_HOST']}/{tenant}/oauth2/v2.0/token"
        form = urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": environ["AZURE_CLIENT_ID"],
                "scope": RESOURCE + "/.default",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": emulator.assertion,
            }
        ).encode()
        status, body = verified_call(
            emulator,
            f"/{tenant.upper()}/OAuth2/v2.0/Token/",
            {},
            {"Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
            body=form,
        )
        assert status == 200, body
        assert body["token_type"] == "Bearer"
        assert emulator.requests[-1].scheme == "https"
