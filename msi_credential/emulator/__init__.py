"""A loopback emulator of every Azure managed identity endpoint, for tests and local development.

>>> with Emulator("app_service") as emulator:  # doctest: +SKIP
...     os.environ.update(emulator.environ)  # any Azure SDK's managed identity credential now finds it
...     credential = ManagedIdentityCredential()

In a pytest suite, the ``msi_emulator`` fixture does this for one test (docs/testing.md); ``scenario=`` replays an
incident of the catalogue there (``SCENARIOS``).
"""

from __future__ import annotations

from ._scenarios import SCENARIOS, Scenario
from ._server import ARC_KEY_DIRECTORY, TOKEN_PROXY_SERVER_NAME, Emulator, Fault
from ._tokens import decode_jwt, mint_jwt
from ._wire import EmulatorSetupError, RecordedRequest, UserAssignedIdentity

__all__ = [
    "ARC_KEY_DIRECTORY",
    "SCENARIOS",
    "TOKEN_PROXY_SERVER_NAME",
    "Emulator",
    "EmulatorSetupError",
    "Fault",
    "RecordedRequest",
    "Scenario",
    "UserAssignedIdentity",
    "decode_jwt",
    "mint_jwt",
]
