"""Hand-off for test_response.py of tests/engine (``_engine/response.py``), through the scripted driver
(tests/engine/scripted.py): a 200 without a token is an error of the source. From test_engine_rules.py (the
sources helper, issue 27)."""

from __future__ import annotations

import json

from msi_credential import ManagedIdentitySource
from msi_credential._engine.effects import Response

from .scripted import APP_SERVICE, Clock, Script, engine
from .sources.support import RESOURCE, failure


def test_a_token_answer_without_a_token_is_an_error_of_the_source() -> None:
    clock = Clock()
    body = json.dumps({"expires_in": 3600}).encode()
    script = Script(clock).queue(Response(200, {"content-type": "application/json"}, body))

    error = failure(script, engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert error.source is ManagedIdentitySource.APP_SERVICE and error.status_code == 200
