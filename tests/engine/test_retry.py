"""msi_credential/_engine/retry.py: ``RetrySchedule`` and ``retry_after``, docs/protocols.md section 7 (which
statuses are retried, delays, Retry-After, deadline), called directly with an injected time. The last two sections
go further: through the scripted driver of tests/engine/scripted.py (a Retry-After date counts from the injected
clock), and through both faces (the ``face`` fixture) against the emulator (the schedule as the credential's
keywords and a Retry-After shape it).
"""

from __future__ import annotations

import email.utils
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Literal, Optional

import pytest

from msi_credential import ManagedIdentityError
from msi_credential._engine.retry import RetrySchedule, RetrySettings, retry_after
from msi_credential.emulator import Fault

from ..transport.support import SCOPE
from .scripted import APP_SERVICE, Clock, Script, engine, error_response, token_response
from .sources.support import RESOURCE

NOW = 1_700_000_000.0
Profile = Literal["imds", "standard"]


def delays(
    schedule: RetrySchedule,
    statuses: list[Optional[int]],
    headers: Optional[dict[str, str]] = None,
    now: float = NOW,
) -> list[Optional[float]]:
    """The delay the schedule gives after each status in turn, stopping at the first None."""
    result: list[Optional[float]] = []
    elapsed = 0.0
    for status in statuses:
        delay = schedule.next_delay(status=status, headers=headers or {}, now=now + elapsed, elapsed=elapsed)
        result.append(delay)
        if delay is None:
            break
        elapsed += delay
    return result


def schedule(profile: Profile = "standard", **settings: float) -> RetrySchedule:
    return RetrySchedule(RetrySettings(**settings), profile)  # type: ignore[arg-type]


# --- which statuses are retried -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [404, 408, 410, 429, 500, 501, 502, 503, 504, 505, 599])
def test_imds_retries_404_408_410_429_and_5xx(status: int) -> None:
    assert schedule("imds").retried(status)


@pytest.mark.parametrize("status", [200, 301, 400, 401, 403, 405, 409, 411, 428, 431, 600])
def test_imds_does_not_retry_other_statuses(status: int) -> None:
    assert not schedule("imds").retried(status)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_standard_retries_408_429_500_502_503_504(status: int) -> None:
    assert schedule("standard").retried(status)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 501, 505, 507, 599])
def test_standard_does_not_retry_404_410_501_505_and_other_4xx(status: int) -> None:
    assert not schedule("standard").retried(status)


# --- default delays -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["imds", "standard"])
@pytest.mark.parametrize("status", [429, 500, 503, None])
def test_default_delays_are_1_2_4_then_stop(profile: Profile, status: Optional[int]) -> None:
    assert delays(schedule(profile), [status] * 5) == [1.0, 2.0, 4.0, None]


def test_retries_counts_the_retries_given() -> None:
    retry = schedule("imds")
    assert retry.retries == 0
    delays(retry, [500] * 5)
    assert retry.retries == 3


def test_imds_410_switches_to_ten_second_steps_and_seven_retries() -> None:
    result = delays(schedule("imds"), [410] * 10)
    assert result == [10.0] * 7 + [None]


def test_imds_410_steps_stay_once_seen() -> None:
    assert delays(schedule("imds"), [410, 500, 503, 429]) == [10.0, 10.0, 10.0, 10.0]


def test_imds_410_after_an_ordinary_retry_switches_to_ten_seconds() -> None:
    result = delays(schedule("imds"), [500, 410, 500])
    assert result[:3] == [1.0, 10.0, 10.0]


def test_standard_profile_ignores_410_for_steps() -> None:
    assert delays(schedule("standard"), [410] * 5) == [1.0, 2.0, 4.0, None]


# --- retry_total, backoff_factor, backoff_max -----------------------------------------------------------------


@pytest.mark.parametrize("profile", ["imds", "standard"])
@pytest.mark.parametrize("status", [500, 410, None])
def test_retry_total_zero_stops_at_once(profile: Profile, status: Optional[int]) -> None:
    assert delays(schedule(profile, total=0), [status]) == [None]


def test_retry_total_above_defaults_keeps_doubling() -> None:
    assert delays(schedule("standard", total=5), [500] * 7) == [1.0, 2.0, 4.0, 8.0, 16.0, None]


def test_retry_total_below_defaults_limits_retries() -> None:
    assert delays(schedule("imds", total=1), [500] * 3) == [1.0, None]


def test_retry_total_applies_to_the_410_schedule() -> None:
    assert delays(schedule("imds", total=2), [410] * 4) == [10.0, 10.0, None]
    assert delays(schedule("imds", total=9), [410] * 12) == [10.0] * 9 + [None]


@pytest.mark.parametrize(
    ("factor", "expected"), [(0.5, [0.5, 1.0, 2.0]), (2.0, [2.0, 4.0, 8.0]), (0.0, [0.0] * 3)]
)
def test_backoff_factor_scales_every_step(factor: float, expected: list[float]) -> None:
    assert delays(schedule("standard", backoff_factor=factor), [500] * 4) == [*expected, None]


@pytest.mark.parametrize(("factor", "step"), [(0.5, 5.0), (0.1, 1.0), (2.0, 20.0)])
def test_backoff_factor_scales_the_410_steps(factor: float, step: float) -> None:
    assert delays(schedule("imds", backoff_factor=factor), [410] * 3) == pytest.approx([step] * 3)


def test_backoff_max_caps_each_step() -> None:
    assert delays(schedule("standard", total=5, backoff_max=3.0), [500] * 6) == [
        1.0,
        2.0,
        3.0,
        3.0,
        3.0,
        None,
    ]


def test_backoff_max_caps_the_410_steps() -> None:
    assert delays(schedule("imds", backoff_max=4.0), [410] * 3) == [4.0, 4.0, 4.0]


def test_schedules_are_per_request_state() -> None:
    settings = RetrySettings()
    first = RetrySchedule(settings, "imds")
    delays(first, [410] * 3)
    assert delays(RetrySchedule(settings, "imds"), [500]) == [1.0]


# --- Retry-After ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "30"}, 30.0),
        ({"retry-after": "0.5"}, 1.0),
        ({"retry-after": "0"}, 1.0),
        ({"retry-after-ms": "5000"}, 5.0),
        ({"retry-after-ms": "100"}, 1.0),
        ({"x-ms-retry-after-ms": "7500"}, 7.5),
        ({"retry-after": "60"}, 60.0),
    ],
)
def test_retry_after_delay_is_max_of_step_and_value(headers: dict[str, str], expected: float) -> None:
    assert schedule("standard").next_delay(status=429, headers=headers, now=NOW, elapsed=0.0) == expected


def test_retry_after_below_the_step_keeps_the_step() -> None:
    retry = schedule("imds")
    assert delays(retry, [500, 500]) == [1.0, 2.0]
    assert retry.next_delay(status=503, headers={"retry-after": "3"}, now=NOW, elapsed=3.0) == 4.0


def test_retry_after_http_date_is_relative_to_now() -> None:
    moment = datetime.fromtimestamp(NOW + 30, tz=timezone.utc)
    headers = {"retry-after": format_datetime(moment, usegmt=True)}
    assert retry_after(headers, NOW) == pytest.approx(30.0)
    assert schedule("standard").next_delay(
        status=503, headers=headers, now=NOW, elapsed=0.0
    ) == pytest.approx(30.0)


def test_retry_after_http_date_in_the_past_is_zero() -> None:
    moment = datetime.fromtimestamp(NOW - 30, tz=timezone.utc)
    headers = {"retry-after": format_datetime(moment, usegmt=True)}
    assert retry_after(headers, NOW) == 0.0
    assert schedule("standard").next_delay(status=503, headers=headers, now=NOW, elapsed=0.0) == 1.0


def test_retry_after_http_date_over_a_minute_away_stops() -> None:
    moment = datetime.fromtimestamp(NOW + 90, tz=timezone.utc)
    headers = {"retry-after": format_datetime(moment, usegmt=True)}
    assert schedule("standard").next_delay(status=503, headers=headers, now=NOW, elapsed=0.0) is None


@pytest.mark.parametrize(
    "headers", [{"retry-after": "61"}, {"retry-after-ms": "60001"}, {"x-ms-retry-after-ms": "120000"}]
)
@pytest.mark.parametrize("profile", ["imds", "standard"])
def test_retry_after_over_sixty_seconds_stops(profile: Profile, headers: dict[str, str]) -> None:
    assert schedule(profile).next_delay(status=429, headers=headers, now=NOW, elapsed=0.0) is None


def test_retry_after_ms_takes_precedence_over_retry_after() -> None:
    assert retry_after({"retry-after-ms": "2000", "retry-after": "50"}, NOW) == 2.0


@pytest.mark.parametrize(
    "headers",
    [{}, {"retry-after": "soon"}, {"retry-after": "-5"}, {"retry-after": "nan"}, {"retry-after-ms": "x"}],
)
def test_unusable_retry_after_is_ignored(headers: dict[str, str]) -> None:
    assert schedule("standard").next_delay(status=429, headers=headers, now=NOW, elapsed=0.0) == 1.0


# --- the 120 s deadline ---------------------------------------------------------------------------------------


def test_a_delay_that_would_cross_the_deadline_stops() -> None:
    retry = schedule("standard")
    assert retry.next_delay(status=500, headers={}, now=NOW, elapsed=119.5) is None


def test_a_delay_that_reaches_the_deadline_exactly_is_allowed() -> None:
    assert schedule("standard").next_delay(status=500, headers={}, now=NOW, elapsed=119.0) == 1.0


def test_retry_after_that_would_cross_the_deadline_stops() -> None:
    retry = schedule("standard")
    assert retry.next_delay(status=429, headers={"retry-after": "30"}, now=NOW, elapsed=100.0) is None


def test_the_410_schedule_respects_the_deadline() -> None:
    retry = schedule("imds", backoff_factor=2.0)
    result = delays(retry, [410] * 8)
    assert result == [20.0] * 6 + [None]
    assert sum(d for d in result if d is not None) <= 120


def test_deadline_is_configurable() -> None:
    retry = RetrySchedule(RetrySettings(deadline=2.5), "standard")
    assert delays(retry, [500] * 4) == [1.0, None]


# --- Retry-After headers, at their edges ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        ({"retry-after-ms": "soon", "x-ms-retry-after-ms": "2000"}, 2.0),  # an unparsable header is skipped
        ({"retry-after-ms": "-5", "retry-after": "3"}, 3.0),  # a negative delay is skipped
        ({"retry-after-ms": "0", "retry-after": "3"}, 0.0),  # zero is a delay
        ({"retry-after-ms": "500", "retry-after": "3"}, 0.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "0.5"}, 0.5),
        ({"retry-after": "-1"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
    ],
)
def test_retry_after_headers_give_the_server_delay(headers: dict[str, str], delay: Optional[float]) -> None:
    assert retry_after(headers, now=0.0) == delay


# --- through the scripted driver: a Retry-After date ----------------------------------------------------------


def test_a_retry_after_date_is_counted_from_the_injected_clock() -> None:
    clock = Clock()
    later = email.utils.formatdate(clock.now + 5, usegmt=True)
    script = Script(clock).queue(error_response(503, {"retry-after": later}), token_response("t"))

    script.run(engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert script.sleeps == [5.0]


# --- through both faces: the keywords and Retry-After ---------------------------------------------------------


def test_retry_after_over_a_minute_stops_retrying(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(Fault(429, headers={"Retry-After": "120"}))
    credential = face.credential(emulator)

    with pytest.raises(ManagedIdentityError) as caught:
        credential.get_token(SCOPE)

    assert caught.value.status_code == 429
    assert face.sleeps == []


def test_retry_keywords_adjust_the_schedule(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(*[Fault(503)] * 5)
    credential = face.credential(emulator, retry_total=5, retry_backoff_factor=0.5, retry_backoff_max=3)

    credential.get_token(SCOPE)

    assert face.sleeps == [0.5, 1.0, 2.0, 3.0, 3.0]
