"""The pytest plugin (msi_credential/pytest_plugin.py), run the way a user's suite runs it: small test files under
pytest's own ``pytester``, the plugin found through its ``pytest11`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import azure.identity
import azure.identity.aio
import pytest
import requests

import msi_credential.aio
from msi_credential import ManagedIdentityCredential

from ..conftest import MANAGED_IDENTITY_VARIABLES

# pytester's in-process runs drop the modules first imported during a run: imported here, the clients the inner
# tests use stay one copy (a second copy of http.cookiejar breaks requests' cookie merging).
CLIENT_MODULES = (azure.identity, azure.identity.aio, requests, msi_credential.aio, ManagedIdentityCredential)

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester whose runs see no ini file of ours (as a user's suite would not)."""
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    return pytester


def test_the_plugin_is_registered_under_pytest11() -> None:
    found: Any = entry_points()
    group = (
        found.select(group="pytest11") if hasattr(found, "select") else found.get("pytest11", ())
    )  # 3.9: a dict
    plugins = {entry.name: entry.value for entry in group}

    assert plugins.get("msi_credential") == "msi_credential.pytest_plugin"


def test_loading_the_plugin_imports_nothing_but_pytest() -> None:
    code = (
        "import sys\nimport msi_credential.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('azure', 'msi_credential', 'trustme', 'aiohttp', 'requests', 'msal')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT
    )

    # the package's own __init__ (its lazy names: the version and the source enum), nothing else
    assert result.stdout.strip() == (
        "['msi_credential', 'msi_credential._source', 'msi_credential._version', 'msi_credential.pytest_plugin']"
    )


def test_the_fixture_points_our_credential_and_azure_identitys_at_the_emulator_for_one_test(
    run: pytest.Pytester,
) -> None:
    run.makepyfile(
        """
        import asyncio, os
        from azure.identity import ManagedIdentityCredential as AzureSync
        from azure.identity.aio import ManagedIdentityCredential as AzureAsync
        from msi_credential import ManagedIdentityCredential
        from msi_credential.aio import ManagedIdentityCredential as OurAsync

        SCOPE = "https://vault.azure.net/.default"

        async def both_async():
            async with OurAsync() as ours, AzureAsync() as theirs:
                return [(await ours.get_token(SCOPE)).token, (await theirs.get_token(SCOPE)).token]

        def test_every_credential_gets_its_token(msi_emulator):
            assert os.environ["AZURE_POD_IDENTITY_AUTHORITY_HOST"] == msi_emulator.environ[
                "AZURE_POD_IDENTITY_AUTHORITY_HOST"]
            tokens = [ManagedIdentityCredential().get_token(SCOPE).token, AzureSync().get_token(SCOPE).token]
            tokens += asyncio.run(both_async())
            assert set(tokens) == set(msi_emulator.issued_tokens())
            # msi_credential's two faces share one cache in a process: one request for both
            assert len(msi_emulator.requests) == 3
            assert "127.0.0.1" in os.environ["NO_PROXY"]

        def test_the_variables_are_gone_after_it():
            assert "AZURE_POD_IDENTITY_AUTHORITY_HOST" not in os.environ
        """
    )

    result = run.runpytest("-p", "no:cacheprovider")

    result.assert_outcomes(passed=2)


def test_the_fixture_removes_other_sources_variables_for_the_test(
    run: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_ENDPOINT", "http://127.0.0.1:9/msi/token")  # left in the developer's shell
    monkeypatch.setenv("IDENTITY_HEADER", "stale")
    run.makepyfile(
        """
        import os
        from msi_credential import ManagedIdentityCredential

        def test_imds_wins(msi_emulator):
            assert "IDENTITY_ENDPOINT" not in os.environ
            assert ManagedIdentityCredential().source.value == "imds"

        def test_restored_after():
            assert os.environ["IDENTITY_HEADER"] == "stale"
        """
    )

    run.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_the_marker_chooses_source_scenario_identities_and_faults(run: pytest.Pytester) -> None:
    run.makepyfile(
        """
        import pytest
        from msi_credential import ManagedIdentityCredential, CredentialUnavailableError
        from msi_credential.emulator import decode_jwt

        SCOPE = "https://storage.azure.com/.default"
        CLIENT = "0d3a6f0e-5a6b-4c7d-8e9f-0a1b2c3d4e5f"

        @pytest.mark.msi_emulator(source="app_service", identities=[CLIENT])
        def test_source_and_identities(msi_emulator):
            token = ManagedIdentityCredential(client_id=CLIENT).get_token(SCOPE).token
            assert msi_emulator.source.value == "app_service"
            assert decode_jwt(token)["appid"] == CLIENT

        @pytest.mark.msi_emulator(scenario="docker_desktop_imds")
        def test_scenario(msi_emulator):
            with pytest.raises(CredentialUnavailableError):
                ManagedIdentityCredential().get_token(SCOPE)
            assert msi_emulator.scenario.name == "docker_desktop_imds"

        @pytest.mark.msi_emulator(scenario="container_apps_starting")
        def test_the_scenarios_source_is_the_default(msi_emulator):
            assert msi_emulator.source.value == "app_service"

        @pytest.mark.msi_emulator(fail=[400], latency=0.01)
        def test_fail_and_latency(msi_emulator):
            with pytest.raises(Exception):
                ManagedIdentityCredential().get_token(SCOPE)
            assert msi_emulator.delay == 0.01
        """
    )
    run.makepyfile(
        test_module_marker="""
        import pytest

        pytestmark = pytest.mark.msi_emulator(source="machine_learning", token_lifetime=600)

        def test_a_module_marker(msi_emulator):
            assert msi_emulator.source.value == "machine_learning"

        @pytest.mark.msi_emulator(source="cloud_shell")
        def test_the_closest_marker_wins_per_keyword(msi_emulator):
            assert msi_emulator.source.value == "cloud_shell"
            assert msi_emulator.token_lifetime == 600
        """
    )

    run.runpytest("-p", "no:cacheprovider", "--strict-markers").assert_outcomes(passed=6)


def test_the_fixture_parametrises_over_sources(run: pytest.Pytester) -> None:
    run.makepyfile(
        """
        import pytest
        from msi_credential import ManagedIdentityCredential

        @pytest.mark.parametrize(
            "msi_emulator",
            ["imds", "app_service", "cloud_shell", "service_fabric", "workload_identity",
             {"source": "machine_learning", "token_lifetime": 600}],
            indirect=True,
        )
        def test_a_token_from_each(msi_emulator):
            assert ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token
            assert ManagedIdentityCredential().source is msi_emulator.source
        """
    )

    run.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=6)


def test_the_session_fixture_is_one_emulator_for_the_session(run: pytest.Pytester) -> None:
    run.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def msi_emulator_session_options():
            return {"source": "app_service"}
        """
    )
    run.makepyfile(
        """
        import os
        from msi_credential import ManagedIdentityCredential
        URLS = set()

        def test_one(msi_emulator_session):
            URLS.add(msi_emulator_session.url)
            assert ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token

        def test_two(msi_emulator_session):
            URLS.add(msi_emulator_session.url)
            assert os.environ["IDENTITY_ENDPOINT"] == msi_emulator_session.url
            ManagedIdentityCredential().get_token("https://storage.azure.com/.default")
            assert len(URLS) == 1
            assert msi_emulator_session.tokens_issued == 1  # the second credential was served from the cache
        """
    )

    run.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    assert "IDENTITY_ENDPOINT" not in os.environ


def test_each_xdist_worker_has_its_own_emulator(
    run: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EMULATOR_URLS", str(run.path))
    run.makepyfile(
        """
        import os, pathlib, pytest
        from msi_credential import ManagedIdentityCredential

        @pytest.mark.parametrize("n", range(6))
        def test_worker(msi_emulator, n):
            assert ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token
            assert len(msi_emulator.requests) == 1
            worker = os.environ["PYTEST_XDIST_WORKER"]
            (pathlib.Path(os.environ["EMULATOR_URLS"]) / f"url-{n}").write_text(f"{worker} {msi_emulator.url}")
        """
    )

    result = run.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")

    result.assert_outcomes(passed=6)
    seen = [(run.path / f"url-{n}").read_text().split() for n in range(6)]
    assert len({url for _, url in seen}) == 6  # an emulator per test, each on a port of its own
    assert {worker for worker, _ in seen} <= {"gw0", "gw1"}


def test_the_first_example_of_docs_testing_runs_as_written(run: pytest.Pytester) -> None:
    text = (ROOT / "docs/testing.md").read_text(encoding="utf-8")
    example = text.split("```python\n", 1)[1].split("```", 1)[0]
    run.makepyfile(test_example=example)

    run.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_plugin_works_without_trustme_and_aiohttp(run: pytest.Pytester) -> None:
    run.makeconftest("import sys\nsys.modules['trustme'] = None\nsys.modules['aiohttp'] = None\n")
    run.makepyfile(
        """
        from msi_credential import ManagedIdentityCredential

        def test_plain_http_sources_need_neither(msi_emulator):
            assert ManagedIdentityCredential().get_token("https://storage.azure.com/.default").token
        """
    )

    run.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)


def test_the_example_applications_tests_pass() -> None:
    """samples/app_with_tests: an application's own suite, using nothing but the plugin (docs/testing.md)."""
    env = {name: value for name, value in os.environ.items() if name not in MANAGED_IDENTITY_VARIABLES}
    env.update(NO_PROXY="*", no_proxy="*")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "samples/app_with_tests"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and "skipped" not in result.stdout
