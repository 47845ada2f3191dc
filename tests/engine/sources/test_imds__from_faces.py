"""IMDS's rules through the sync credential (from the former test_credential_common.py): where nothing answers
at the IMDS address, inside a credential chain and on its own. The network is a transport that refuses every
request."""

from __future__ import annotations

import pytest
from azure.core.exceptions import ClientAuthenticationError

from msi_credential import CredentialUnavailableError, ManagedIdentityCredential, ManagedIdentitySource

from ...faces.support import STORAGE, RefusingTransport


def test_not_on_azure_in_a_credential_chain_is_unavailable_without_retries(in_credential_chain: None) -> None:
    transport = RefusingTransport()
    credential = ManagedIdentityCredential(_environ={}, transport=transport, _sleep=lambda s: None)
    assert credential.source is ManagedIdentitySource.IMDS

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert isinstance(caught.value, ClientAuthenticationError)
    [(request, options)] = transport.requests
    assert request.url.startswith("http://169.254.169.254/metadata/identity/oauth2/token?")
    assert options["connection_timeout"] == 1.0


def test_not_on_azure_on_its_own_is_unavailable_after_the_normal_timeouts_and_retries() -> None:
    sleeps: list[float] = []
    transport = RefusingTransport()
    credential = ManagedIdentityCredential(_environ={}, transport=transport, _sleep=sleeps.append)

    with pytest.raises(CredentialUnavailableError) as caught:
        credential.get_token(STORAGE)

    assert caught.value.error_code == "imds_unreachable"
    assert [options["connection_timeout"] for _, options in transport.requests] == [2.0] * 4
    assert sleeps == [1.0, 2.0, 4.0]
