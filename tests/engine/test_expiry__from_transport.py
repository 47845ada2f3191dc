"""Hand-off from tests/transport (the lead folds it into this folder's test_expiry.py): the lifetime rules on
real answers: a token of exactly two hours refreshes at half its lifetime whatever fraction of a second the
request started at, and expiry numbers too large for float arithmetic are invalid_response. Both faces (the
``face`` fixture), against a loopback server."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError

from ..transport import support
from ..transport.support import (
    SCOPE,
    environ_for,
    http_answer,
    token_body,
)

capturing_server = support.capturing_server  # the fixture


@pytest.mark.parametrize("fraction", [0.0, 0.4, 0.999])
def test_a_token_of_exactly_two_hours_refreshes_at_half_its_lifetime(
    face: Any,
    capturing_server: Any,
    fraction: float,
) -> None:
    """expires_in 7200 is >= 7200 s whatever fraction of a second the request started at."""
    start = 1_800_000_000 + fraction
    server = capturing_server(lambda head: http_answer(token_body(expires_in=7200)))
    credential = face.credential(_environ=environ_for("app_service", server.port), _clock=lambda: start)

    info = credential.get_token_info(SCOPE)

    assert info.expires_on == 1_800_000_000 + 7200
    assert info.refresh_on == 1_800_000_000 + 3600


@pytest.mark.parametrize(
    "field",
    [
        {"expires_in": int("9" * 4000)},
        {"expires_in": -int("9" * 4000)},
        {"expires_on": int("9" * 4000)},
        {"expires_in": 3600, "refresh_in": int("9" * 4000)},
        {"expires_in": 1e300},
    ],
    ids=["expires_in", "negative", "expires_on", "refresh_in", "float"],
)
def test_a_huge_expiry_number_is_invalid_response_not_an_overflow(
    face: Any,
    capturing_server: Any,
    field: dict[str, Any],
) -> None:
    body = {"access_token": "tok-" + "y" * 20, **field}
    server = capturing_server(lambda head: http_answer(body))
    credential = face.credential(_environ=environ_for("app_service", server.port), retry_total=0)

    try:
        info = credential.get_token_info(SCOPE)
    except ManagedIdentityError as error:
        assert error.error_code == "invalid_response"
    else:  # a refresh_in out of range is ignored, as any unusable refresh_in is
        assert "refresh_in" in field
        assert info.refresh_on < info.expires_on
