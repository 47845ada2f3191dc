"""Cloud Shell (``_engine/sources/cloud_shell.py``): its request as the spec builds it. What it does like every source,
through the scripted driver and through the credential against the emulator: test_spec.py."""

from __future__ import annotations

from msi_credential._engine.identity import Identity
from msi_credential._source import ManagedIdentitySource as S

from .support import CLOUD_SHELL_URL, FORM, RESOURCE, build

# ----------------------------------------------------------------------------------------- the request


def test_cloud_shell_posts_a_form_without_query() -> None:
    request = build(S.CLOUD_SHELL)
    assert request.method == "POST"
    assert request.url == CLOUD_SHELL_URL
    assert request.params == ()
    assert dict(request.headers) == {"Metadata": "true", "Content-Type": FORM}
    assert dict(request.form or {}) == {"resource": RESOURCE}


def test_cloud_shell_extra_keys_join_the_form_without_overriding_resource() -> None:
    identity = Identity(extra=(("resource", "https://evil"), ("foo", "bar")))
    request = build(S.CLOUD_SHELL, identity)
    assert dict(request.form or {}) == {"resource": RESOURCE, "foo": "bar"}
    assert request.params == ()
