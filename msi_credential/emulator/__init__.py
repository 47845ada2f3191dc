"""A loopback emulator of every Azure managed identity endpoint, for tests and local development.

>>> with Emulator("app_service") as emulator:  # doctest: +SKIP
...     credential = ManagedIdentityCredential(_environ=emulator.environ)
"""

from __future__ import annotations

from ._server import ARC_KEY_DIRECTORY, TOKEN_PROXY_SERVER_NAME, Emulator, Fault
from ._tokens import decode_jwt, mint_jwt
from ._wire import EmulatorSetupError, RecordedRequest, UserAssignedIdentity

__all__ = [
    "ARC_KEY_DIRECTORY",
    "TOKEN_PROXY_SERVER_NAME",
    "Emulator",
    "EmulatorSetupError",
    "Fault",
    "RecordedRequest",
    "UserAssignedIdentity",
    "decode_jwt",
    "mint_jwt",
]
