"""msi_credential/_transport/aio.py (from the former test_credential_common.py): a caller's async transport
refused by the exiting interpreter is a typed error."""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential import ManagedIdentityError

from ..faces.support import STORAGE


async def test_a_given_transport_refused_by_the_exiting_interpreter_is_a_typed_error(
    emulator_factory: Any,
) -> None:
    """In an atexit handler a caller's async transport that needs the loop's executor cannot send; our own
    transports then send as the sync face does (tests/test_processes.py), a caller's is a ManagedIdentityError."""
    from azure.core.pipeline.transport import AioHttpTransport

    from msi_credential.aio import ManagedIdentityCredential as AsyncCredential

    class Exiting(AioHttpTransport):
        async def send(self, request: Any, **kwargs: Any) -> Any:
            raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    emulator = emulator_factory("app_service")
    async with AsyncCredential(
        _environ=emulator.environ, share_cache=False, transport=Exiting()
    ) as credential:
        with pytest.raises(ManagedIdentityError) as caught:
            await credential.get_token(STORAGE)

    assert caught.value.error_code == "interpreter_exiting"
    assert "atexit" in str(caught.value)
