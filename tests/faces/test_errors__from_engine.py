"""Hand-off from the engine helper (issue 27), to fold into test_errors.py of this folder: ``_errors.py``'s errors
pickle with their evidence.

Moved from the engine's test_response.py (the tests folder's root, before issue 27).
"""

from __future__ import annotations


def test_errors_survive_pickling_with_their_evidence() -> None:
    import pickle

    from msi_credential._errors import CredentialUnavailableError, failed, unavailable

    gone = pickle.loads(pickle.dumps(unavailable("m", error_code="imds_unreachable", status_code=None)))
    refused = pickle.loads(
        pickle.dumps(failed("m", error_code="http_500", status_code=500, correlation_id="c"))
    )

    assert isinstance(gone, CredentialUnavailableError) and gone.error_code == "imds_unreachable"
    assert not isinstance(refused, CredentialUnavailableError)
    assert (refused.status_code, refused.correlation_id) == (500, "c")
