"""Azure Machine Learning (``_engine/sources/machine_learning.py``): the client id in the request its spec builds, its
default client id through the scripted driver (tests/engine/scripted.py, no sockets), then through the public
credential on both faces against the emulator. Its request, with every source's: test_spec.py."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential._source import ManagedIdentitySource as S
from msi_credential.emulator import Fault

from ..scripted import Clock, Script, engine, token_response
from .support import GUID, MACHINE_LEARNING, RESOURCE, build, user

# ----------------------------------------------------------------------------------------- the request


def test_machine_learning_system_assigned_sends_default_identity_client_id() -> None:
    request = build(S.MACHINE_LEARNING, default_client_id="ml-default")
    assert request.params == (
        ("api-version", "2017-09-01"),
        ("resource", RESOURCE),
        ("clientid", "ml-default"),
    )


def test_machine_learning_user_assigned_client_id_is_clientid() -> None:
    request = build(S.MACHINE_LEARNING, user("client_id"), default_client_id="ml-default")
    assert request.params == (("api-version", "2017-09-01"), ("resource", RESOURCE), ("clientid", GUID))


# ------------------------------------------------------------------------ the engine's rules, scripted


def test_default_client_ids_that_only_upper_case_alike_keep_separate_tokens() -> None:
    clock = Clock()
    script = Script(clock).queue(token_response("one"), token_response("two"))
    first = engine(dict(MACHINE_LEARNING, DEFAULT_IDENTITY_CLIENT_ID="straße"), clock, share_cache=True)
    other = engine(dict(MACHINE_LEARNING, DEFAULT_IDENTITY_CLIENT_ID="STRASSE"), clock, share_cache=True)

    assert script.run(first.acquire(RESOURCE)).token == "one"
    assert script.run(other.acquire(RESOURCE)).token == "two"


# -------------------------------------------- through the credential, both faces, against the emulator


def test_machine_learning_system_assigned_sends_default_client_id(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("machine_learning", default_client_id="ffffffff-0000-0000-0000-000000000000")
    credential = face.credential(emulator)

    credential.get_token("https://storage.azure.com/.default")

    assert emulator.requests[0].query["clientid"] == "ffffffff-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    "expires_on",
    [
        "06/20/2049 02:57:58 +00:00",
        "1/16/2049 5:24:12 AM +00:00",
        "2049-10-18T19:51:37.0000000+00:00",
    ],
)
def test_machine_learning_reads_date_expiry_forms(face: Any, emulator_factory: Any, expires_on: str) -> None:
    # Far-future dates fail the 7-day lifetime rule, so use a fixed clock just before them.
    emulator = emulator_factory("machine_learning")
    from msi_credential._engine.expiry import parse_expires_on

    expiry = parse_expires_on(expires_on)
    assert expiry is not None
    emulator.script(Fault(200, {"access_token": "opaque-token-value", "expires_on": expires_on}))
    credential = face.credential(emulator, _clock=lambda: float(expiry - 3600))

    token = credential.get_token("https://storage.azure.com/.default")

    assert token.expires_on == expiry
