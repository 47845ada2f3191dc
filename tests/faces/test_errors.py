"""msi_credential/_errors.py: the typed errors, as raised through the credential: azure-identity's unavailable
class when that package is imported, and a pickled error keeps its evidence (an error raised through both faces
against the emulator, and errors made directly)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential
from msi_credential._errors import failed, unavailable
from msi_credential.emulator import Emulator, Fault

from .support import STORAGE, RefusingTransport, failure


def test_unavailable_error_is_azure_identity_class_when_it_is_imported() -> None:
    import azure.identity

    transport_error = RefusingTransport()
    credential = ManagedIdentityCredential(
        _environ={}, transport=transport_error, _sleep=lambda seconds: None
    )

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert isinstance(caught.value, azure.identity.CredentialUnavailableError)


def test_errors_pickle_with_their_request_id(face: Any, emulator_factory: Any) -> None:
    emulator: Emulator = emulator_factory("imds")
    emulator.script(Fault(400, body={"error": "invalid_request", "error_description": "Identity not found"}))

    error = failure(face, emulator)
    assert isinstance(error, CredentialUnavailableError)
    copy = pickle.loads(pickle.dumps(error))

    assert isinstance(copy, CredentialUnavailableError)
    assert copy.client_request_id == error.client_request_id
    assert copy.message == error.message
    assert copy.error_code == error.error_code


def test_errors_survive_pickling_with_their_evidence() -> None:
    gone = pickle.loads(pickle.dumps(unavailable("m", error_code="imds_unreachable", status_code=None)))
    refused = pickle.loads(
        pickle.dumps(failed("m", error_code="http_500", status_code=500, correlation_id="c"))
    )

    assert isinstance(gone, CredentialUnavailableError) and gone.error_code == "imds_unreachable"
    assert not isinstance(refused, CredentialUnavailableError)
    assert (refused.status_code, refused.correlation_id) == (500, "c")
