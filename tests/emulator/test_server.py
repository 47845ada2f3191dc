"""msi_credential/emulator/_server.py: ``Emulator`` itself, minting (lifetime, clock), scripted faults, random
failures, what ``clear()`` forgets, the issued tokens kept, and its life cycle; spoken to with http.client."""

from __future__ import annotations

import http.client
import socket
import time
from typing import Any
from urllib.parse import urlsplit

import pytest

from msi_credential.emulator import Emulator, Fault, decode_jwt

from ..skips import skip_or_fail_in_ci
from .http_calls import RESOURCE, assert_entra_error, call, token_request, wi_request


def test_tokens_are_distinct_and_lifetime_and_clock_apply(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", clock=lambda: 1_700_000_000.9)

    first = token_request(emulator).json()
    emulator.token_lifetime = 600
    second = token_request(emulator).json()

    assert first["access_token"] != second["access_token"]
    assert decode_jwt(first["access_token"])["exp"] == 1_700_000_000 + 3600
    assert decode_jwt(second["access_token"])["exp"] == 1_700_000_000 + 600
    assert second["expires_on"] == str(1_700_000_000 + 600)
    assert second["client_id"] == emulator.system_identity.client_id


# ---------------------------------------------------------------------------------------------- faults


def test_scripted_faults_answer_in_order_then_normal_behaviour_resumes(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(500), Fault(429, headers={"Retry-After": "3"}), Fault(404, "<html/>"))

    answers = [token_request(emulator) for _ in range(4)]
    statuses = [answer.status for answer in answers]

    assert statuses == [500, 429, 404, 200]
    assert answers[0].json()["error"] == "internal_server_error"
    assert answers[1].headers["retry-after"] == "3"
    assert answers[2].body == b"<html/>"
    assert answers[2].headers["content-type"].startswith("text/plain")
    assert emulator.tokens_issued == 1


def test_fault_bodies_are_sent_verbatim(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.script(
        Fault(200, b"not json"),
        Fault(200, {"access_token": "opaque", "expires_in": 60}),
        Fault(302, b"", {"Location": "http://127.0.0.1:9/"}),
    )

    bad = token_request(emulator)
    opaque = token_request(emulator)
    redirect = token_request(emulator)

    assert (bad.status, bad.body) == (200, b"not json")
    assert opaque.json() == {"access_token": "opaque", "expires_in": 60}
    assert opaque.headers["content-type"] == "application/json"
    assert redirect.status == 302 and redirect.headers["location"] == "http://127.0.0.1:9/"
    assert redirect.body == b""
    assert emulator.tokens_issued == 0


def test_success_fault_without_body_is_the_normal_answer_with_its_headers(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(200, headers={"X-Extra": "1"}))

    answer = token_request(emulator)

    assert answer.status == 200 and answer.headers["x-extra"] == "1"
    assert emulator.tokens_issued == 1


def test_fault_and_emulator_delays(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.script(Fault(200, delay=0.1))

    started = time.monotonic()
    token_request(emulator)
    faulted = time.monotonic() - started
    emulator.delay = 0.1
    started = time.monotonic()
    token_request(emulator)
    delayed = time.monotonic() - started

    assert faulted >= 0.1
    assert delayed >= 0.1


def test_fault_arguments_are_checked(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    with pytest.raises(ValueError):
        Fault(99)
    with pytest.raises(TypeError):
        emulator.script(500)


# ---------------------------------------------------------------------------------------------- what it keeps


def test_clear_forgets_requests_faults_and_tokens(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    token_request(emulator)
    emulator.script(Fault(500))

    emulator.clear()

    assert emulator.requests == []
    assert emulator.tokens_issued == 0
    assert emulator.issued_tokens() == []
    assert token_request(emulator).status == 200


def test_issued_tokens_keeps_the_most_recent_and_counts_them_all(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    minted = [emulator._mint(RESOURCE, emulator.system_identity, 0).token for _ in range(1005)]

    assert emulator.tokens_issued == 1005
    assert emulator.issued_tokens() == minted[5:]


# ---------------------------------------------------------------------------------------------- lifecycle


def test_stop_is_idempotent_and_closes_live_connections() -> None:
    emulator = Emulator("imds").start()
    parts = urlsplit(emulator.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port or 0, timeout=5)
    connection.request("GET", parts.path + "?api-version=2018-02-01&resource=x", headers={"Metadata": "true"})
    assert connection.getresponse().read()

    emulator.stop()
    emulator.stop()

    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        connection.request("GET", parts.path, headers={"Metadata": "true"})
        connection.getresponse()
    connection.close()


def test_context_manager_and_ipv6(emulator_factory: Any) -> None:
    with Emulator("imds") as emulator:
        assert token_request(emulator).status == 200
    if not socket.has_ipv6:
        skip_or_fail_in_ci("this Python has no IPv6")
    try:
        v6 = emulator_factory("imds", host="::1")
    except OSError:
        skip_or_fail_in_ci("::1 is not available on this host")
    assert v6.url.startswith("http://[::1]:")
    assert token_request(v6).status == 200


def test_unknown_source_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Emulator("nowhere")


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        _ = Emulator("imds").url


def test_service_fabric_cannot_be_served_over_plain_http() -> None:
    with pytest.raises(ValueError, match="https only"):
        Emulator("service_fabric", tls=False)


# ---------------------------------------------------------------------------------------------- random failures


def test_fail_randomly_at_rate_one_fails_every_token_request_and_zero_turns_it_off(
    emulator_factory: Any,
) -> None:
    emulator = emulator_factory("imds")

    emulator.fail_randomly(1.0, statuses=(503,))
    failed = [token_request(emulator) for _ in range(3)]
    emulator.fail_randomly(0)
    recovered = token_request(emulator)

    assert [answer.status for answer in failed] == [503, 503, 503]
    assert set(failed[0].json()) == {"error", "error_description"}  # the source's error shape
    assert recovered.status == 200
    assert emulator.random_failures == 3
    assert emulator.tokens_issued == 1


def test_fail_randomly_429_carries_retry_after_zero(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")
    emulator.fail_randomly(1, statuses=[429])

    answer = token_request(emulator)

    assert answer.status == 429
    assert answer.headers["retry-after"] == "0"
    assert set(answer.json()) == {"statusCode", "message", "correlationId"}


def test_fail_randomly_draws_statuses_and_is_repeatable_with_a_seed(emulator_factory: Any) -> None:
    first = emulator_factory("imds")
    second = emulator_factory("imds")
    first.fail_randomly(0.5, seed=1234)
    second.fail_randomly(0.5, seed=1234)

    one = [token_request(first).status for _ in range(40)]
    two = [token_request(second).status for _ in range(40)]

    assert one == two
    assert set(one) == {200, 500, 429}
    assert first.random_failures == sum(status != 200 for status in one)
    assert first.tokens_issued == one.count(200)


def test_fail_randomly_leaves_scripted_faults_and_other_paths_alone(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.fail_randomly(1.0, statuses=(500,))
    emulator.script(Fault(200), Fault(404, "scripted"))

    scripted_ok = token_request(emulator)
    scripted_404 = token_request(emulator)
    elsewhere = call(emulator, path="/metadata/instance", headers={"Metadata": "true"})

    assert scripted_ok.status == 200
    assert (scripted_404.status, scripted_404.body) == (404, b"scripted")
    assert elsewhere.status == 404 and elsewhere.json()["error"] == "not_found"
    assert emulator.random_failures == 0


def test_fail_randomly_applies_to_workload_identity(emulator_factory: Any) -> None:
    emulator = emulator_factory("workload_identity")
    emulator.fail_randomly(1.0, statuses=(500,))

    answer = wi_request(emulator)

    assert_entra_error(answer, 500, "temporarily_unavailable", 90033)
    assert emulator.random_failures == 1


def test_clear_resets_the_random_failure_count_but_not_the_rate(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    emulator.fail_randomly(1.0)
    token_request(emulator)

    emulator.clear()
    assert emulator.random_failures == 0
    assert token_request(emulator).status in (500, 429)
    assert emulator.random_failures == 1


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-0.1,), ValueError),
        ((1.5,), ValueError),
        ((float("nan"),), ValueError),
        (("0.5",), TypeError),
        ((True,), TypeError),
        ((0.5, ()), ValueError),
        ((0.5, (200,)), ValueError),
        ((0.5, (600,)), ValueError),
        ((0.5, (True,)), ValueError),
        ((0.5, ("500",)), ValueError),
        ((0.5, (500,), "seed"), TypeError),
    ],
)
def test_fail_randomly_checks_its_arguments(
    emulator_factory: Any, args: tuple[Any, ...], error: type
) -> None:
    emulator = emulator_factory("imds")
    emulator.fail_randomly(1.0, statuses=(503,))

    with pytest.raises(error):
        emulator.fail_randomly(*args)

    assert token_request(emulator).status == 503  # the previous setting stands


def test_fail_randomly_is_thread_safe(emulator_factory: Any) -> None:
    import concurrent.futures

    emulator = emulator_factory("imds")
    emulator.fail_randomly(0.5, statuses=(500, 503, 429), seed=7)

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda _: token_request(emulator).status, range(160)))

    failures = sum(status != 200 for status in statuses)
    assert set(statuses) <= {200, 500, 503, 429}
    assert 0 < failures < 160
    assert emulator.random_failures == failures
    assert emulator.tokens_issued == statuses.count(200)
    assert len(emulator.requests) == 160


# -------------------------------------------------------------------------------- the token proxy's CA
# Only the token proxy emulator rotates a CA.


def test_rotate_proxy_ca_needs_the_token_proxy(emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    with pytest.raises(RuntimeError, match="token_proxy"):
        emulator.rotate_proxy_ca()
    with pytest.raises(ValueError, match="workload identity"):
        Emulator("imds", token_proxy=True)
