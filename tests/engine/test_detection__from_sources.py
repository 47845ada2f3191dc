"""Hand-off for test_detection.py of tests/engine (``_engine/detection.py``): which source detection picks, and the
AKS token proxy's detection rules. From test_token_proxy.py, test_credential_workload_identity.py and
test_credential_azure_arc.py (the sources helper, issue 27)."""

from __future__ import annotations

from typing import Any

from msi_credential import ManagedIdentitySource
from msi_credential._engine.detection import detect
from msi_credential.emulator import Emulator

STORAGE = "https://storage.azure.com/.default"


def test_opted_in_without_any_proxy_variable_goes_to_the_authority(emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    config = detect(
        dict(emulator.environ), platform="linux", path_exists=lambda p: False, enable_azure_proxy=True
    )
    assert config.token_proxy is None and config.problem is None
    assert config.endpoint == emulator.url


def test_detection_keeps_the_proxy_out_of_other_sources() -> None:
    environ = {
        "IDENTITY_ENDPOINT": "http://127.0.0.1:1/token",
        "IDENTITY_HEADER": "h",
        "AZURE_KUBERNETES_TOKEN_PROXY": "https://127.0.0.1:2",
        "AZURE_KUBERNETES_SNI_NAME": "x.invalid",
    }
    config = detect(environ, platform="linux", path_exists=lambda p: False, enable_azure_proxy=True)
    assert config.source is ManagedIdentitySource.APP_SERVICE
    assert config.token_proxy is None and config.endpoint == "http://127.0.0.1:1/token"


def test_other_sources_win_over_workload_identity(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("workload_identity")
    cloud_shell = emulator_factory("cloud_shell")
    credential = face.credential(emulator, _environ={**emulator.environ, **cloud_shell.environ})

    assert credential.source is ManagedIdentitySource.CLOUD_SHELL
    credential.get_token(STORAGE)
    assert emulator.requests == [] and len(cloud_shell.requests) == 1


def test_arc_is_detected_by_the_himds_file(face: Any) -> None:
    credential = face.credential(_environ={}, _path_exists=lambda path: path == "/opt/azcmagent/bin/himds")

    assert credential.source is ManagedIdentitySource.AZURE_ARC
