"""msi_credential/_engine/expiry.py: token lifetimes (docs/protocols.md section 3), called directly: expiry formats,
expires_in precedence, refresh_on rules, the edges of the parsing rules, and properties (hypothesis). The last
section goes through both faces (the ``face`` fixture) against a loopback server: a token of exactly two hours
refreshes at half its lifetime whatever fraction of a second the request started at, and expiry numbers too large
for float arithmetic are invalid_response.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from msi_credential import ManagedIdentityError
from msi_credential._engine.expiry import (
    MAX_LIFETIME,
    ExpiryError,
    parse_expires_on,
    parse_seconds,
    token_times,
)

from ..transport import support
from ..transport.support import SCOPE, environ_for, http_answer, token_body

# 2024-10-18T19:51:37Z
EPOCH = 1729281097
START = float(EPOCH - 3600)


def times(
    *, start: float = START, expires_in: object = None, expires_on: object = None, refresh_in: object = None
):
    return token_times(start=start, expires_in=expires_in, expires_on=expires_on, refresh_in=refresh_in)


# --- parse_expires_on -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (EPOCH, EPOCH),
        (str(EPOCH), EPOCH),
        (f" {EPOCH} ", EPOCH),
        (f"{EPOCH}.999", EPOCH),
        (EPOCH + 0.999, EPOCH),
        (float(EPOCH), EPOCH),
    ],
    ids=["int", "numeric-string", "padded-string", "decimal-string-truncated", "float-truncated", "float"],
)
def test_epoch_numbers_and_numeric_strings(value: object, expected: int) -> None:
    assert parse_expires_on(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "2024-10-18T19:51:37Z",
        "2024-10-18T19:51:37z",
        "2024-10-18T19:51:37+00:00",
        "2024-10-18T19:51:37.0000000+00:00",
        "2024-10-18T19:51:37.1234567Z",
        "2024-10-18T19:51:37.5+00:00",
        "2024-10-18T19:51:37.123456",
        "2024-10-18T19:51:37",
        "2024-10-18T21:51:37+02:00",
        "2024-10-18T14:51:37.0000000-05:00",
    ],
)
def test_iso_8601_forms_in_utc(value: str) -> None:
    assert parse_expires_on(value) == EPOCH


@pytest.fixture
def new_york_local_time() -> Iterator[None]:
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/New_York"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved
        time.tzset()


@pytest.mark.skipif(
    not hasattr(time, "tzset"), reason="needs time.tzset (absent on Windows, which CI is not)"
)
@pytest.mark.usefixtures("new_york_local_time")
def test_naive_iso_8601_and_legacy_forms_are_utc_not_local_time() -> None:
    assert parse_expires_on("2024-10-18T19:51:37") == EPOCH
    assert parse_expires_on("2024-10-18T19:51:37.1234567") == EPOCH
    assert parse_expires_on("06/20/2019 02:57:58 +00:00") == 1560999478


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("06/20/2019 02:57:58 +00:00", 1560999478),
        ("1/16/2020 5:24:12 AM +00:00", 1579152252),
        ("1/16/2020 5:24:12 PM +00:00", 1579152252 + 12 * 3600),
        ("06/20/2019 04:57:58 +02:00", 1560999478),
    ],
)
def test_legacy_date_forms(value: str, expected: int) -> None:
    assert parse_expires_on(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "  ",
        "soon",
        "2024-13-45T00:00:00Z",
        "1e9",
        "0x66f00000",
        True,
        False,
        [EPOCH],
        {"t": 1},
        float("nan"),
        float("inf"),
        "9" * 16,
        "x" * 100,
    ],
)
def test_unparseable_expires_on_is_none(value: object) -> None:
    assert parse_expires_on(value) is None


def _iso_of_length(length: int) -> str:
    head = "2026-01-01T00:00:00."
    return head + "5" * (length - len(head) - 1) + "Z"


@pytest.mark.parametrize("length", [63, 64])
def test_an_iso_expiry_of_up_to_64_characters_is_parsed(length: int) -> None:
    assert parse_expires_on(_iso_of_length(length)) == 1767225600


@pytest.mark.parametrize("length", [65, 100])
def test_an_iso_expiry_longer_than_64_characters_is_refused(length: int) -> None:
    assert parse_expires_on(_iso_of_length(length)) is None


def test_an_iso_fraction_is_read_as_a_decimal_fraction() -> None:
    # 0.1 s, not 1 us: at year 1 the float timestamp keeps the difference, and int() rounds toward zero
    assert parse_expires_on("0001-01-01T00:00:00.1Z") == -62135596799
    assert parse_expires_on("0001-01-01T00:00:00.000001Z") == -62135596800


def test_a_numeric_string_of_15_digits_is_seconds_and_16_digits_are_refused() -> None:
    assert parse_seconds("123456789012345") == 123456789012345
    assert parse_seconds("1234567890123456") is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (10**15, 10**15),
        (-(10**15), -(10**15)),
        (10**15 + 1, None),
        (1e15, 10**15),
        (1e16, None),
        (-1e16, None),
    ],
)
def test_numbers_of_seconds_are_read_up_to_10_to_the_15(value: object, seconds: Optional[int]) -> None:
    assert parse_seconds(value) == seconds


# --- token_times: which field wins, and the lifetime limits ---------------------------------------------------


def test_expires_in_is_relative_to_request_start() -> None:
    assert times(expires_in=3600)[0] == int(START) + 3600
    assert times(expires_in="3600")[0] == int(START) + 3600


def test_expires_in_wins_over_expires_on() -> None:
    expiry, _ = times(expires_in=3600, expires_on=int(START) + 86400)
    assert expiry == int(START) + 3600


def test_expires_in_wins_even_when_expires_on_is_garbage() -> None:
    assert times(expires_in="3600", expires_on="garbage")[0] == int(START) + 3600


def test_bad_expires_in_is_an_error_even_with_a_good_expires_on() -> None:
    with pytest.raises(ExpiryError):
        times(expires_in="soon", expires_on=int(START) + 3600)


@pytest.mark.parametrize(
    "expires_on",
    [EPOCH, str(EPOCH), "2024-10-18T19:51:37.0000000+00:00", "2024-10-18T19:51:37Z", float(EPOCH) + 0.5],
)
def test_expires_on_used_without_expires_in(expires_on: object) -> None:
    assert times(expires_on=expires_on)[0] == EPOCH


def test_legacy_expires_on_in_token_times() -> None:
    start = 1560999478 - 3600.0
    assert times(start=start, expires_on="06/20/2019 02:57:58 +00:00")[0] == 1560999478
    start = 1579152252 - 3600.0
    assert times(start=start, expires_on="1/16/2020 5:24:12 AM +00:00")[0] == 1579152252


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in": 0},
        {"expires_in": -10},
        {"expires_in": "-1"},
        {"expires_on": int(START) - 1},
        {"expires_on": int(START)},
        {"expires_on": "2019-06-20T02:57:58Z"},
    ],
)
def test_past_or_current_expiry_is_an_error(fields: dict[str, object]) -> None:
    with pytest.raises(ExpiryError):
        times(**fields)


def test_lifetime_of_exactly_seven_days_is_accepted() -> None:
    expiry, _ = times(expires_in=MAX_LIFETIME)
    assert expiry == int(START) + 7 * 24 * 3600


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in": MAX_LIFETIME + 1},
        {"expires_in": str(10**12)},
        {"expires_on": int(START) + MAX_LIFETIME + 1},
        {"expires_on": "2099-01-01T00:00:00Z"},
    ],
)
def test_lifetime_over_seven_days_is_an_error(fields: dict[str, object]) -> None:
    with pytest.raises(ExpiryError):
        times(**fields)


def test_neither_expires_in_nor_expires_on_is_an_error() -> None:
    with pytest.raises(ExpiryError):
        times()
    with pytest.raises(ExpiryError):
        times(refresh_in=100)


@pytest.mark.parametrize(
    "fields",
    [
        {"expires_in": "soon"},
        {"expires_in": True},
        {"expires_in": [3600]},
        {"expires_in": {"s": 3600}},
        {"expires_in": float("nan")},
        {"expires_in": float("inf")},
        {"expires_in": "3600s"},
        {"expires_in": ""},
        {"expires_on": "tomorrow"},
        {"expires_on": False},
        {"expires_on": [EPOCH]},
        {"expires_on": ""},
    ],
)
def test_garbage_is_an_error(fields: dict[str, object]) -> None:
    with pytest.raises(ExpiryError):
        times(**fields)


def test_float_expires_in_is_truncated() -> None:
    assert times(expires_in=3600.9)[0] == int(START) + 3600
    assert times(expires_in="3600.9")[0] == int(START) + 3600


def test_expiry_error_is_a_value_error() -> None:
    assert issubclass(ExpiryError, ValueError)


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"expires_in": "x", "expires_on": None}, "expires_in is not a number of seconds"),
        ({"expires_in": None, "expires_on": "someday"}, "expires_on is not in a known format"),
        ({"expires_in": None, "expires_on": None}, "the response has neither expires_in nor expires_on"),
        ({"expires_in": 0, "expires_on": None}, "the token has already expired"),
        ({"expires_in": 8 * 24 * 3600, "expires_on": None}, "the token's lifetime is over 7 days"),
    ],
)
def test_an_unusable_expiry_says_why(fields: dict[str, object], why: str) -> None:
    with pytest.raises(ExpiryError) as caught:
        token_times(start=1000.0, refresh_in=None, **fields)
    assert str(caught.value) == why


# --- refresh_on -----------------------------------------------------------------------------------------------


def test_refresh_in_sets_refresh_on_from_request_start() -> None:
    assert times(expires_in=86400, refresh_in=3600) == (int(START) + 86400, int(START) + 3600)
    assert times(expires_in=86400, refresh_in="3600") == (int(START) + 86400, int(START) + 3600)


def test_refresh_in_applies_with_expires_on_too() -> None:
    assert times(expires_on=EPOCH, refresh_in=600) == (EPOCH, int(START) + 600)


@pytest.mark.parametrize("lifetime", [7200, 7201, 86400, MAX_LIFETIME])
def test_long_lifetimes_refresh_at_half_life(lifetime: int) -> None:
    assert times(expires_in=lifetime) == (int(START) + lifetime, int(START + lifetime / 2))


@pytest.mark.parametrize("lifetime", [600, 601, 3600, 7199])
def test_medium_lifetimes_refresh_five_minutes_before_expiry(lifetime: int) -> None:
    expiry = int(START) + lifetime
    assert times(expires_in=lifetime) == (expiry, expiry - 300)


@pytest.mark.parametrize("lifetime", [1, 2, 60, 300, 599])
def test_short_lifetimes_refresh_at_half_life(lifetime: int) -> None:
    assert times(expires_in=lifetime) == (int(START) + lifetime, int(START + lifetime / 2))


def test_boundary_7200_uses_half_life_not_five_minutes() -> None:
    assert times(expires_in=7200)[1] == int(START) + 3600
    assert times(expires_in=7199)[1] == int(START) + 7199 - 300


def test_boundary_600_uses_five_minutes_before_expiry() -> None:
    assert times(expires_in=600)[1] == int(START) + 300
    assert times(expires_in=599)[1] == int(START + 599 / 2)


def test_refresh_on_rules_measure_lifetime_from_request_start_for_expires_on() -> None:
    assert times(expires_on=int(START) + 7200)[1] == int(START) + 3600
    assert times(expires_on=int(START) + 3600)[1] == int(START) + 3300


def test_refresh_on_is_never_after_expiry() -> None:
    for lifetime in (1, 10, 599, 600, 601, 7199, 7200, MAX_LIFETIME):
        expiry, refresh_on = times(expires_in=lifetime)
        assert refresh_on <= expiry


def test_refresh_in_of_one_second_is_honoured() -> None:
    assert token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=1) == (4600, 1001)


def test_refresh_in_of_zero_is_ignored_for_the_default_refresh_time() -> None:
    assert token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=0) == (4600, 4300)


# change: `refresh_in` equal to the lifetime is accepted (`<` becomes `<=`)
def test_refresh_in_equal_to_the_lifetime_is_ignored() -> None:
    expires_on, refresh_on = token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=3600)

    assert expires_on == 4600
    assert refresh_on == 4600 - 300  # the default rule, not the expiry itself


def test_refresh_in_just_under_the_lifetime_is_taken() -> None:
    _, refresh_on = token_times(start=1000.0, expires_in=3600, expires_on=None, refresh_in=3599)

    assert refresh_on == 1000 + 3599


# --- properties -----------------------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**7), max_value=10**7).map(lambda n: int(START) + n)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.integers(min_value=-(10**7), max_value=10**7).map(lambda n: str(int(START) + n))
    | st.integers(min_value=-10, max_value=10**6).map(str)
)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=3), max_leaves=5)


@settings(max_examples=200, deadline=None)
@given(expires_in=json_values, expires_on=json_values, refresh_in=json_values)
def test_any_json_values_give_two_ints_or_expiry_error(
    expires_in: object, expires_on: object, refresh_in: object
) -> None:
    try:
        expiry, refresh_on = times(expires_in=expires_in, expires_on=expires_on, refresh_in=refresh_in)
    except ExpiryError:
        return
    assert type(expiry) is int
    assert type(refresh_on) is int
    assert START < expiry <= START + MAX_LIFETIME
    assert math.floor(START) <= refresh_on <= expiry


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_parse_expires_on_of_any_text_is_int_or_none(text: str) -> None:
    result = parse_expires_on(text)
    assert result is None or type(result) is int


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 31)))
def test_iso_8601_with_seven_digit_fraction_round_trips(moment: datetime) -> None:
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{moment.microsecond:06d}0Z"
    assert parse_expires_on(text) == int(moment.replace(tzinfo=timezone.utc).timestamp())


# --- through both faces, on a loopback server: lifetimes of real answers --------------------------------------

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
