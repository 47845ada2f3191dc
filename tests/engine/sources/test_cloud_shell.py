"""Cloud Shell (``_engine/sources/cloud_shell.py``): identity_config's extra keys in the form its spec builds. Its
request, and what it does like every source through the scripted driver and through the credential against the
emulator: test_spec.py."""

from __future__ import annotations

from msi_credential._engine.identity import Identity
from msi_credential._source import ManagedIdentitySource as S

from .support import RESOURCE, build

# ----------------------------------------------------------------------------------------- the request


def test_cloud_shell_extra_keys_join_the_form_without_overriding_resource() -> None:
    identity = Identity(extra=(("resource", "https://evil"), ("foo", "bar")))
    request = build(S.CLOUD_SHELL, identity)
    assert dict(request.form or {}) == {"resource": RESOURCE, "foo": "bar"}
    assert request.params == ()
