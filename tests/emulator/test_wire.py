"""msi_credential/emulator/_wire.py: what every endpoint shares on the wire, the recorded requests (fields, secrets
kept out of their repr, the ring and its byte budget) and the path rules; spoken to with http.client."""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlencode

import pytest

from msi_credential.emulator import Emulator, RecordedRequest, _wire

from .http_calls import RESOURCE, call, token_request, verified_call

# ---------------------------------------------------------------------------------------------- recording


def test_recorded_request_fields(emulator_factory: Any) -> None:
    emulator = emulator_factory("cloud_shell")

    token_request(emulator)

    [request] = emulator.requests
    assert isinstance(request, RecordedRequest)
    assert request.method == "POST"
    assert request.path == "/oauth2/token"
    assert request.query == {}
    assert request.form == {"resource": RESOURCE}
    assert request.body == urlencode({"resource": RESOURCE}).encode()
    assert request.headers["metadata"] == "true"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert all(name == name.lower() for name in request.headers)
    assert request.scheme == "http"


def test_recorded_request_repr_hides_secrets(emulator_factory: Any) -> None:
    emulator = emulator_factory("app_service")

    token_request(emulator)

    [request] = emulator.requests
    text = repr(request)
    assert "x-identity-header" in text
    assert "/msi/token" in text and "GET" in text
    assert emulator.secret not in text
    assert emulator.secret not in repr(emulator)


def test_recorded_requests_are_a_ring_of_the_most_recent(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", record_limit=5)

    for number in range(12):
        call(emulator, path=f"/probe/{number}")

    assert [request.path for request in emulator.requests] == [f"/probe/{number}" for number in range(7, 12)]
    assert emulator.requests_received == 12
    emulator.clear()
    assert (emulator.requests, emulator.requests_received) == ([], 0)


def test_recording_nothing_still_counts_and_serves(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds", record_limit=0)

    assert token_request(emulator).status == 200

    assert (emulator.requests, emulator.requests_received, emulator.tokens_issued) == ([], 1, 1)


@pytest.mark.parametrize("limit", [-1, 1.5, True, "10"])
def test_record_limit_must_be_a_count_or_none(limit: Any) -> None:
    with pytest.raises(ValueError, match="record_limit"):
        Emulator("imds", record_limit=limit)


def test_a_large_recorded_body_is_cut_and_keeps_its_length(emulator_factory: Any) -> None:
    emulator = emulator_factory("cloud_shell")
    large = b"resource=" + b"x" * (1024 * 1024 - 9)  # the largest body the emulator reads: 1 MiB

    call(emulator, "POST", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=large)
    token_request(emulator)

    cut, whole = emulator.requests
    assert (len(cut.body), cut.body_length, cut.form) == (_wire.MAX_RECORDED_BODY, len(large), {})
    assert cut.body == large[: _wire.MAX_RECORDED_BODY]
    assert (whole.body_length, whole.form) == (None, {"resource": RESOURCE})


def test_memory_kept_for_many_large_bodies_is_bounded(emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    body = b"x" * (1024 * 1024)

    for _ in range(150):  # 150 MiB received
        call(emulator, "POST", body=body)

    kept = emulator.requests
    assert len(kept) == 150 and emulator.requests_received == 150
    assert all(len(request.body) == _wire.MAX_RECORDED_BODY for request in kept)
    assert sum(len(request.body) for request in kept) <= _wire.MAX_RECORDED_BYTES


def test_recording_drops_the_oldest_beyond_its_byte_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_wire, "MAX_RECORDED_BYTES", 200 * 1024)
    recording = _wire.Recording(None)  # no count limit: only the budget
    for number in range(10):
        recording.add(RecordedRequest("POST", f"/{number}", {}, {"h": "v" * 1000}, {}, b"x" * 60000, "http"))

    kept = recording.requests()
    assert [request.path for request in kept] == ["/7", "/8", "/9"]  # the newest that fit in 200 KiB
    assert recording.received == 10
    huge = RecordedRequest("GET", "/huge", {}, {"h": "v" * 300 * 1024}, {}, b"", "http")
    recording.add(huge)
    assert recording.requests() == [huge]  # the newest is always kept


# ---------------------------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    ("source", "path", "headers"),
    [
        ("imds", "/metadata/identity/oauth2/token/", {"Metadata": "true"}),
        ("imds", "/METADATA/Identity/OAuth2/Token", {"Metadata": "true"}),
        ("app_service", "/msi/token/", None),
        ("app_service", "/MSI/TOKEN", None),
        ("machine_learning", "/msi/auth/", None),
        ("service_fabric", "/metadata/identity/oauth2/token/", None),
    ],
)
def test_token_paths_in_any_case_and_with_a_trailing_slash(
    source: str, path: str, headers: Optional[dict[str, str]]
) -> None:
    api = {
        "imds": "2018-02-01",
        "app_service": "2019-08-01",
        "machine_learning": "2017-09-01",
        "service_fabric": "2020-05-01",
    }[source]
    with Emulator(source) as emulator:
        secret = {
            "imds": {},
            "app_service": {"X-IDENTITY-HEADER": emulator.secret},
            "machine_learning": {"secret": emulator.secret},
            "service_fabric": {"Secret": emulator.secret},
        }[source]
        status, body = verified_call(
            emulator, path, {"api-version": api, "resource": RESOURCE}, {**(headers or {}), **secret}
        )
        assert status == 200, body
        assert body["access_token"].count(".") == 2


@pytest.mark.parametrize(
    "path",
    ["/metadata/identity/oauth2/token//", "/metadata/identity/oauth2", "/metadata/identity/oauth2/tokens"],
)
def test_other_paths_get_the_services_not_found(path: str) -> None:
    with Emulator("imds") as emulator:
        status, body = verified_call(
            emulator, path, {"api-version": "2018-02-01", "resource": RESOURCE}, {"Metadata": "true"}
        )
    assert status == 404
    assert body["error"] == "not_found"
