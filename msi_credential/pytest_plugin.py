"""The pytest plugin (``pytest11`` entry point ``msi_credential``): the ``msi_emulator`` fixture, its marker and
the session-scoped ``msi_emulator_session`` (docs/testing.md).

Nothing here runs until a test asks for a fixture: loading the plugin imports only pytest and the standard library,
so a suite that never uses it pays nothing, and one without trustme or aiohttp installed still loads it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from msi_credential.emulator import Emulator

MARKER = "msi_emulator"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# Options of the marker (and of msi_emulator_session_options) besides those Emulator() takes itself.
_EXTRA = ("fail", "latency")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(source='imds', scenario=None, identities=(), **options): configure the msi_emulator fixture "
        "(docs/testing.md): the managed identity source it plays, an incident scenario, the user-assigned "
        "identities it knows, and any other Emulator option (fail=[statuses], latency=seconds, clock=...)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The marker's options (the closest marker wins per keyword), then an indirect parameter's."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            options["source"] = marker.args[0]
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if isinstance(param, Mapping):
        options.update(param)
    elif param is not None:
        options["source"] = param  # parametrize("msi_emulator", ["imds", "app_service"], indirect=True)
    return options


def _identity(value: Any) -> Any:
    from msi_credential.emulator import UserAssignedIdentity

    if isinstance(value, UserAssignedIdentity):
        return value
    if isinstance(value, str):
        import uuid

        return UserAssignedIdentity(value, str(uuid.uuid4()), "")
    parts = list(value)
    if len(parts) not in (2, 3):
        raise ValueError(
            "an identity is a UserAssignedIdentity, a client id, or (client_id, object_id[, resource_id])"
        )
    return UserAssignedIdentity(parts[0], parts[1], parts[2] if len(parts) == 3 else "")


def start_emulator(options: Mapping[str, Any]) -> Emulator:
    """An emulator started with the fixture's ``options`` (the marker's keywords)."""
    from msi_credential._source import ManagedIdentitySource
    from msi_credential.emulator import ARC_KEY_DIRECTORY, SCENARIOS, Emulator, Fault

    kwargs = {name: value for name, value in options.items() if name not in _EXTRA}
    scenario = kwargs.get("scenario")
    default = (
        SCENARIOS[scenario].default_source if isinstance(scenario, str) and scenario in SCENARIOS else "imds"
    )
    if scenario is not None and not isinstance(scenario, str):
        default = type(scenario).default_source
    source = ManagedIdentitySource(kwargs.pop("source", default))
    kwargs["identities"] = [_identity(value) for value in kwargs.get("identities", ())]
    if source is ManagedIdentitySource.WORKLOAD_IDENTITY:
        kwargs.setdefault("tls", True)  # Entra is https; the CA variables make the clients trust it
    if source is ManagedIdentitySource.AZURE_ARC:
        # the clients read key files only from the agent's directory: the emulator must write them there
        kwargs.setdefault("arc_key_directory", ARC_KEY_DIRECTORY)
    emulator = Emulator(source, **kwargs)
    latency = options.get("latency", 0.0)
    emulator.delay = float(latency)
    fail: Sequence[int] = options.get("fail", ())
    emulator.script(*(Fault(status) for status in fail))
    return emulator.start()


def environment(emulator: Emulator) -> dict[str, str]:
    """The variables that point any client at ``emulator``: its own, the CA ones over https, and NO_PROXY."""
    variables = {**emulator.environ, **emulator.trust_environ}
    for name in ("NO_PROXY", "no_proxy"):
        present = [part.strip() for part in os.environ.get(name, "").split(",") if part.strip()]
        variables[name] = ",".join(present + [host for host in _LOOPBACK if host not in present])
    return variables


def _point_at(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from msi_credential._engine.detection import VARIABLES

    variables = environment(emulator)
    for name in VARIABLES:  # a variable of another source left in the shell would win over the emulator's
        if name not in variables:
            monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    _trust_in_aiohttp(emulator)


def _trust_in_aiohttp(emulator: Emulator) -> None:
    """aiohttp makes its verifying SSL context once, at import, from SSL_CERT_FILE as it was then: an async client
    imported before this test would not see the run's CA. Add the CA to that context (a CA made for one run, its key
    gone when the emulator stops, so trusting it longer opens nothing)."""
    import sys

    connector = sys.modules.get("aiohttp.connector")
    context = getattr(connector, "_SSL_CONTEXT_VERIFIED", None)
    ca_file = emulator.ca_file if emulator.trust_environ else None
    if ca_file is not None and context is not None:
        context.load_verify_locations(cafile=ca_file)


def _forget_cached_tokens() -> None:
    """Tokens of an emulator of an earlier test are not served to this one (msi_credential's shared cache)."""
    from msi_credential._engine import cache

    cache.clear_shared_cache()


@pytest.fixture
def msi_emulator(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A managed identity endpoint on loopback for this test, with the variables that point any Azure SDK's managed
    identity credential at it set until the test ends. Configure it with ``@pytest.mark.msi_emulator(...)``."""
    emulator = start_emulator(_options(request))
    try:
        _point_at(
            emulator, monkeypatch
        )  # undone by monkeypatch's own teardown, after this one, with the test's
        _forget_cached_tokens()
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def msi_emulator_session_options() -> dict[str, Any]:
    """The options of ``msi_emulator_session`` (the marker's keywords); override it in a conftest.py."""
    return {}


@pytest.fixture(scope="session")
def msi_emulator_session(msi_emulator_session_options: Mapping[str, Any]) -> Iterator[Emulator]:
    """One emulator for the whole session (for each pytest-xdist worker: one each), its variables set from its first
    use to the end of the session. Tokens stay cached across tests; ``clear()`` forgets recorded requests."""
    emulator = start_emulator(msi_emulator_session_options)
    patch = pytest.MonkeyPatch()
    try:
        _point_at(emulator, patch)
        yield emulator
    finally:
        patch.undo()
        emulator.stop()
