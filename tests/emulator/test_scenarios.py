"""The incident scenarios (msi_credential/emulator/_scenarios.py), each against four clients: msi_credential's
sync and async credentials and azure-identity's. What each client does is asserted; docs/testing.md's catalogue
states the same. Time is a manual clock the clients' retry waits advance: nothing here waits for a scenario."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.core.pipeline.transport import AioHttpTransport, RequestsTransport
from azure.identity import CredentialUnavailableError as AzureUnavailable

from msi_credential import CredentialUnavailableError, ManagedIdentityError
from msi_credential.emulator import SCENARIOS, Emulator, Fault, Scenario, UserAssignedIdentity, decode_jwt
from msi_credential.emulator._scenarios import (
    DOCKER_DESKTOP_UNREACHABLE,
    ContainerAppsStarting,
    ExpiredFederatedToken,
    IdentityNotYetAssigned,
    ImdsThrottling,
    SlowEndpoint,
)
from msi_credential.pytest_plugin import _point_at

VAULT = "https://vault.azure.net/.default"
CLIENTS = ["msi_credential", "msi_credential.aio", "azure.identity", "azure.identity.aio"]
OURS = {"msi_credential", "msi_credential.aio"}
IDENTITY = UserAssignedIdentity(
    "0d3a6f0e-5a6b-4c7d-8e9f-0a1b2c3d4e5f", "5b1a7b0c-0000-4000-8000-000000000001", ""
)


class ManualClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class Client:
    """One client (ours or azure-identity's, sync or async) pointed at an emulator through the environment only,
    its retry waits recorded and added to the manual clock instead of slept."""

    def __init__(self, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.name = name
        self.monkeypatch = monkeypatch
        self.clock = ManualClock()
        self.sleeps: list[float] = []
        self.emulator: Optional[Emulator] = None
        self._loop = asyncio.new_event_loop()

    @property
    def ours(self) -> bool:
        return self.name in OURS

    def start(self, scenario: Any, source: Optional[str] = None, **kwargs: Any) -> Emulator:
        kind = SCENARIOS[scenario] if isinstance(scenario, str) else type(scenario)
        source = source or kind.default_source.value  # type: ignore[attr-defined]
        if source == "workload_identity":
            kwargs.setdefault("tls", True)
        self.emulator = Emulator(source, scenario=scenario, clock=self.clock, **kwargs).start()
        _point_at(self.emulator, self.monkeypatch)
        return self.emulator

    def _sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.clock.now += seconds
        if self.emulator is not None and self.emulator.scenario is not None:
            self.emulator.scenario.poll()  # a start-up that is now over takes effect before the next attempt

    def get_token(self, **kwargs: Any) -> str:
        """A fresh credential of this client asks for a Key Vault token; returns it or raises what it raised."""
        sleep = self._sleep
        if self.name == "msi_credential":
            from msi_credential import ManagedIdentityCredential

            with ManagedIdentityCredential(
                share_cache=False, _sleep=sleep, _clock=self.clock, **kwargs
            ) as cred:
                return cred.get_token(VAULT).token
        if self.name == "azure.identity":
            from azure.identity import ManagedIdentityCredential as AzureCredential

            class Transport(RequestsTransport):
                def sleep(self, duration: float) -> None:
                    sleep(duration)

            with AzureCredential(transport=Transport(), **kwargs) as cred:
                return cred.get_token(VAULT).token

        async def run() -> str:
            if self.name == "msi_credential.aio":
                from msi_credential.aio import ManagedIdentityCredential as OurAsync

                async def async_sleep(seconds: float) -> None:
                    sleep(seconds)

                async with OurAsync(
                    share_cache=False, _sleep=async_sleep, _clock=self.clock, **kwargs
                ) as cred:
                    return (await cred.get_token(VAULT)).token
            from azure.identity.aio import ManagedIdentityCredential as AzureAsync

            class AsyncTransport(AioHttpTransport):
                async def sleep(self, duration: float) -> None:
                    sleep(duration)

            async with AzureAsync(transport=AsyncTransport(), **kwargs) as cred:
                return (await cred.get_token(VAULT)).token

        return self._loop.run_until_complete(run())

    def close(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
        self._loop.close()


@pytest.fixture(params=CLIENTS)
def client(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    made = Client(request.param, monkeypatch)
    yield made
    made.close()


def test_every_scenario_of_the_catalogue_is_tested_here_and_listed_in_docs() -> None:
    source = Path(__file__).read_text(encoding="utf-8")
    catalogue = (Path(__file__).resolve().parents[2] / "docs/testing.md").read_text(encoding="utf-8")
    for name in SCENARIOS:
        assert f"def test_{name}_" in source, name
        assert f"| `{name}` |" in catalogue, name


def test_docker_desktop_imds_is_unavailable_for_every_client(client: Client) -> None:
    emulator = client.start("docker_desktop_imds")

    with pytest.raises(ClientAuthenticationError) as caught:
        client.get_token()

    request = emulator.requests[0]
    assert len(emulator.requests) == 1  # nobody retries a 403
    assert request.path == "/metadata/identity/oauth2/token"
    if client.ours:
        assert isinstance(caught.value, CredentialUnavailableError)
        assert caught.value.error_code == "imds_unreachable"
        assert caught.value.status_code == 403
    else:
        assert isinstance(caught.value, AzureUnavailable)  # unavailable too: DefaultAzureCredential moves on


def test_docker_desktop_imds_answers_as_the_incident_shows() -> None:
    with Emulator("imds", scenario="docker_desktop_imds") as emulator:
        import http.client

        connection = http.client.HTTPConnection("127.0.0.1", int(emulator.url.split(":")[2].split("/")[0]))
        connection.request(
            "GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x", headers={}
        )
        answer = connection.getresponse()
        body = answer.read().decode()
        connection.close()

    assert answer.status == 403
    assert answer.getheader("Connection") == "close"
    assert body.strip() == DOCKER_DESKTOP_UNREACHABLE
    assert "A socket operation was attempted to an unreachable network" in body


def test_identity_not_yet_assigned_is_unavailable_until_it_propagates(client: Client) -> None:
    emulator = client.start("identity_not_yet_assigned", identities=[IDENTITY])

    outcomes = []
    for _ in range(3):
        try:
            client.get_token(client_id=IDENTITY.client_id)
            outcomes.append("token")
        except AzureUnavailable as error:  # ours are instances of it too once azure.identity is imported
            outcomes.append(getattr(error, "error_code", "unavailable"))
        except ClientAuthenticationError:
            outcomes.append("failed")

    # no client retries a 400 on its own: each call fails until the identity is there, then gets a token
    expected = "identity_not_found" if client.ours else "unavailable"
    assert outcomes == [expected, expected, "token"]
    assert len(emulator.requests) == 3
    assert client.sleeps == []
    assert decode_jwt(emulator.issued_tokens()[0])["appid"] == IDENTITY.client_id


def test_identity_not_yet_assigned_for_seconds_reads_the_emulator_clock(client: Client) -> None:
    client.start(IdentityNotYetAssigned(requests=0, seconds=30))

    with pytest.raises(ClientAuthenticationError):
        client.get_token()
    client.clock.now += 30

    assert client.get_token()


def test_imds_throttling_is_retried_after_the_servers_delay(client: Client) -> None:
    emulator = client.start(ImdsThrottling(requests=2, retry_after=3))

    token = client.get_token()

    assert token == emulator.issued_tokens()[0]
    assert len(emulator.requests) == 3
    if client.ours:
        assert client.sleeps == [3.0, 3.0]  # the larger of its backoff (1, 2 s) and Retry-After
    else:
        assert client.sleeps == [3, 3]  # azure-core's RetryPolicy: Retry-After as given


def test_imds_throttling_with_fail_on_top_fails_first_then_throttles(client: Client) -> None:
    emulator = client.start(ImdsThrottling(requests=1, retry_after=1))
    emulator.script(Fault(503))  # what --fail 503 adds: scripted faults go before the scenario

    client.get_token()

    assert len(emulator.requests) == 3
    assert emulator.scenario is not None and emulator.scenario.answered == 1


def test_container_apps_starting_refuses_connections_then_serves(client: Client) -> None:
    emulator = client.start(ContainerAppsStarting(seconds=2))

    token = client.get_token()

    assert token == emulator.issued_tokens()[0]
    assert len(emulator.requests) == 1  # the refused attempts never reached a listener
    assert sum(client.sleeps) >= 2
    if client.ours:
        assert client.sleeps == [1.0, 2.0]
    else:
        assert client.sleeps == [
            1.6,
            3.2,
        ]  # azure-core's backoff (App Service: factor 0.8) for connection errors


def test_container_apps_starting_longer_than_the_retries_fails(client: Client) -> None:
    emulator = client.start(ContainerAppsStarting(seconds=3600))

    with pytest.raises(Exception) as caught:  # what each client raises is the point
        client.get_token()

    assert emulator.requests == []
    if client.ours:
        assert isinstance(caught.value, ManagedIdentityError)
        assert not isinstance(caught.value, CredentialUnavailableError)
        assert caught.value.error_code == "endpoint_unreachable"
        assert client.sleeps == [1.0, 2.0, 4.0]
    else:
        # azure-identity lets azure-core's connection error through: not a ClientAuthenticationError
        assert type(caught.value) is ServiceRequestError
        assert client.sleeps == [1.6, 3.2]  # three attempts


def test_single_user_assigned_answers_a_system_assigned_request_with_that_identity(client: Client) -> None:
    emulator = client.start("single_user_assigned", identities=[IDENTITY])

    token = client.get_token()  # no client_id: "the system-assigned identity"

    assert "client_id" not in emulator.requests[0].query
    assert decode_jwt(token)["appid"] == IDENTITY.client_id  # every client takes it without a word


def test_single_user_assigned_with_a_second_identity_refuses_requests_without_a_selector(
    client: Client,
) -> None:
    other = UserAssignedIdentity(
        "7e0f3c1a-0000-4000-8000-000000000002", "7e0f3c1a-0000-4000-8000-000000000003", ""
    )
    client.start("single_user_assigned", identities=[IDENTITY, other])

    with pytest.raises(ClientAuthenticationError) as caught:
        client.get_token()

    assert isinstance(caught.value, AzureUnavailable)  # a 400 from IMDS: unavailable, for every client
    if client.ours:
        assert caught.value.error_code == "identity_not_found"  # type: ignore[attr-defined]
    assert decode_jwt(client.get_token(client_id=other.client_id))["appid"] == other.client_id


def test_expired_federated_token_is_refused_with_aadsts700024(client: Client) -> None:
    emulator = client.start("expired_federated_token")

    with pytest.raises(ClientAuthenticationError) as caught:
        client.get_token()

    assert len(emulator.requests) == 1  # a 400 from Entra: nobody retries
    assert not isinstance(caught.value, AzureUnavailable)  # failed: a chain stops here
    if client.ours:
        assert isinstance(caught.value, ManagedIdentityError)
        assert caught.value.error_code == "invalid_client"
    assert "AADSTS700024" in str(caught.value)
    assert emulator.assertion not in str(caught.value)

    emulator.rotate_assertion()  # the kubelet writes a fresh one: the next credential reads it
    assert client.get_token()


def test_expired_federated_token_states_the_assertions_times() -> None:
    clock = ManualClock()
    with Emulator(
        "workload_identity", tls=True, clock=clock, scenario=ExpiredFederatedToken(expired_for=600)
    ) as e:
        claims = decode_jwt(e.assertion)
        assert claims["exp"] == int(clock.now) - 600
        assert e.scenario is not None
        fault = e.scenario.answer(_assertion_request(e.assertion), 0.0)

    assert fault is not None and fault.status == 400
    assert isinstance(fault.body, dict) and fault.body["error_codes"] == [700024]
    assert re.search(
        r"assertion valid from \S+, expiry time of assertion \S+\.", fault.body["error_description"]
    )


def _assertion_request(assertion: str) -> Any:
    from msi_credential.emulator import RecordedRequest

    return RecordedRequest(
        "POST", "/t/oauth2/v2.0/token", {}, {}, {"client_assertion": assertion}, b"", "https"
    )


def test_slow_endpoint_answers_late_and_every_client_waits_by_default(client: Client) -> None:
    emulator = client.start(SlowEndpoint(seconds=0.3))

    assert client.get_token() == emulator.issued_tokens()[0]
    assert len(emulator.requests) == 1


def test_slow_endpoint_past_our_read_timeout_is_retried_then_unavailable() -> None:
    # read_timeout bounds each attempt of msi_credential; azure-identity's IMDS client takes no read timeout
    clock = ManualClock()
    with Emulator("imds", clock=clock, scenario=SlowEndpoint(seconds=0.5)) as emulator:
        from msi_credential import ManagedIdentityCredential

        sleeps: list[float] = []
        credential = ManagedIdentityCredential(
            _environ=emulator.environ,
            share_cache=False,
            _sleep=sleeps.append,
            _clock=clock,
            read_timeout=0.05,
        )
        with pytest.raises(CredentialUnavailableError) as caught:
            credential.get_token(VAULT)

    assert caught.value.error_code == "imds_unreachable"
    assert sleeps == [1.0, 2.0, 4.0]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_scenario_of_another_source_is_refused_at_construction(name: str) -> None:
    kind: Any = SCENARIOS[name]
    other = next(
        (
            source
            for source in ("app_service", "imds", "service_fabric")
            if kind.sources and source not in kind.sources
        ),
        None,
    )
    if other is None:
        assert isinstance(Emulator("service_fabric", scenario=name).scenario, Scenario)
        return
    with pytest.raises(ValueError, match="incident of"):
        Emulator(other, scenario=name)


def test_an_unknown_scenario_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="docker_desktop_imds"):
        Emulator("imds", scenario="no_such_incident")
