"""Hand-off for test_credential.py of tests/faces (``_credential.py``): a pickled credential keeps the AKS token proxy
opt-in. From test_token_proxy.py (the sources helper, issue 27)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from msi_credential.emulator import Emulator


@pytest.fixture
def proxy(emulator_factory: Any) -> Emulator:
    started: Emulator = emulator_factory("workload_identity", token_proxy=True)
    return started


def test_a_pickled_credential_keeps_the_opt_in(proxy: Emulator) -> None:
    from msi_credential import ManagedIdentityCredential

    credential = ManagedIdentityCredential(enable_azure_proxy=True, share_cache=False)
    copy = pickle.loads(pickle.dumps(credential))
    assert copy._arguments["enable_azure_proxy"] is True
