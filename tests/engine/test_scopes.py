"""msi_credential/_engine/scopes.py: ``resource_from_scopes``, exactly one scope in, the resource (less a trailing
``/.default``) out; called directly, with properties (hypothesis) and the refusals word for word. The last two
sections go through both faces (the ``face`` fixture) against the emulator: bad scopes are ValueErrors before any
request, a scope without /.default is the resource, and a scope's fragment reaches the endpoint as part of the
resource, with the identity.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from msi_credential._engine.scopes import resource_from_scopes
from msi_credential.emulator import UserAssignedIdentity

from ..transport.support import CLIENT_A


@pytest.mark.parametrize(
    ("scope", "resource"),
    [
        ("https://management.azure.com/.default", "https://management.azure.com"),
        ("https://storage.azure.com/.default", "https://storage.azure.com"),
        ("https://vault.azure.net", "https://vault.azure.net"),
        ("https://graph.microsoft.com/", "https://graph.microsoft.com/"),
        ("https://storage.azure.com//.default", "https://storage.azure.com/"),
        ("api://my-app/.default", "api://my-app"),
        ("e406a681-f3d4-42a8-90b6-c2b029497af1", "e406a681-f3d4-42a8-90b6-c2b029497af1"),
    ],
)
def test_one_scope_gives_its_resource_with_default_suffix_stripped(scope: str, resource: str) -> None:
    assert resource_from_scopes((scope,)) == resource


def test_default_suffix_only_stripped_at_the_end() -> None:
    assert resource_from_scopes(("https://x/.default/path",)) == "https://x/.default/path"


def test_zero_scopes_is_value_error() -> None:
    with pytest.raises(ValueError, match="exactly one scope"):
        resource_from_scopes(())


def test_several_scopes_is_value_error() -> None:
    with pytest.raises(ValueError, match="exactly one scope"):
        resource_from_scopes(("https://a/.default", "https://b/.default"))


def test_the_same_scope_twice_is_still_several_scopes() -> None:
    with pytest.raises(ValueError):
        resource_from_scopes(("https://a/.default", "https://a/.default"))


@pytest.mark.parametrize("scope", ["", "/.default", " ", "\t", "  \n ", " /.default"])
def test_empty_or_whitespace_scope_is_value_error(scope: str) -> None:
    with pytest.raises(ValueError):
        resource_from_scopes((scope,))


@pytest.mark.parametrize(
    "scope",
    [
        " https://a/.default",
        "https://a/.default ",
        "https://a b/.default",
        "https://a\u00a0b",
    ],
)
def test_scope_containing_whitespace_is_value_error(scope: str) -> None:
    with pytest.raises(ValueError):
        resource_from_scopes((scope,))


@pytest.mark.parametrize(
    "scope",
    ["https://a\x00/.default", "https://a\r\nX-Evil: 1", "https://a\x7f", "https://a\u2028b", "\x1b[31m"],
)
def test_control_character_scope_is_value_error(scope: str) -> None:
    with pytest.raises(ValueError):
        resource_from_scopes((scope,))


@pytest.mark.parametrize("scope", [None, 42, b"https://a/.default", ["https://a/.default"], object()])
def test_non_string_scope_is_value_error(scope: Any) -> None:
    with pytest.raises(ValueError, match="string"):
        resource_from_scopes((scope,))


def test_doubled_default_suffix_does_not_yield_a_resource_ending_in_default() -> None:
    try:
        resource = resource_from_scopes(("https://x/.default/.default",))
    except ValueError:
        return
    assert not resource.endswith("/.default")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_gives_a_resource_consistent_with_the_scope_or_value_error(scope: str) -> None:
    try:
        resource = resource_from_scopes((scope,))
    except ValueError:
        return
    assert isinstance(resource, str)
    assert resource
    assert scope in (resource, resource + "/.default")
    assert resource.isprintable()
    assert not any(ch.isspace() for ch in resource)


@settings(max_examples=200, deadline=None)
@given(st.text())
@example("https://x/.default/.default")
def test_any_text_gives_a_resource_without_trailing_default_or_value_error(scope: str) -> None:
    try:
        resource = resource_from_scopes((scope,))
    except ValueError:
        return
    assert resource
    assert not resource.endswith("/.default")


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9:/._-]{1,40}", fullmatch=True))
def test_url_like_text_with_default_suffix_round_trips(base: str) -> None:
    if base.endswith("/.default") or base in ("", "/.default"):
        return
    assert resource_from_scopes((base + "/.default",)) == base


# --- the words of a refusal --------------------------------------------------------------------------------------


def test_a_scope_ending_twice_in_default_is_refused_saying_so() -> None:
    with pytest.raises(ValueError) as caught:
        resource_from_scopes(("https://vault.azure.net/.default/.default",))
    assert str(caught.value) == "a scope may end with '/.default' once, not twice"


def test_a_scope_that_is_not_a_string_is_refused_naming_its_type() -> None:
    with pytest.raises(ValueError) as caught:
        resource_from_scopes((42,))  # type: ignore[arg-type]
    assert str(caught.value) == "a scope must be a string, not int"


@pytest.mark.parametrize("scope", ["", " ", "https://vault.azure.net/.default\n"])
def test_an_unusable_scope_is_refused_in_these_words(scope: str) -> None:
    with pytest.raises(ValueError) as caught:
        resource_from_scopes((scope,))

    assert str(caught.value) == (
        "a scope must be a non-empty resource or '<resource>/.default' without whitespace or control characters"
    )


# --- through both faces: bad scopes, a scope without /.default ---------------------------------------------------


@pytest.mark.parametrize(
    "scopes",
    [(), ("a", "b"), ("",), ("   ",), ("/.default",), ("https://x/.default\n",), ("https://x y",)],
)
def test_bad_scopes_are_value_errors(face: Any, emulator_factory: Any, scopes: tuple[str, ...]) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    with pytest.raises(ValueError):
        credential.get_token(*scopes)
    with pytest.raises(ValueError):
        credential.get_token_info(*scopes)
    assert emulator.requests == []


def test_scope_without_default_suffix_is_the_resource(face: Any, emulator_factory: Any) -> None:
    emulator = emulator_factory("imds")
    credential = face.credential(emulator)

    credential.get_token("https://management.azure.com")
    credential.get_token("api://my-app/.default")

    assert [r.query["resource"] for r in emulator.requests] == [
        "https://management.azure.com",
        "api://my-app",
    ]


# --- through both faces: a fragment in a scope -------------------------------------------------------------------


def test_a_fragment_in_a_scope_reaches_the_emulator_as_the_resource_with_the_identity(
    face: Any, emulator_factory: Any
) -> None:
    """The emulator sees the whole resource and the client id: no fallback to the system-assigned identity."""
    emulator = emulator_factory("imds", identities=[UserAssignedIdentity(CLIENT_A, "object-a", "/sub/a")])
    credential = face.credential(emulator, client_id=CLIENT_A)

    credential.get_token("https://vault.azure.net#/.default")

    (request,) = emulator.requests
    assert request.query["resource"] == "https://vault.azure.net#"
    assert request.query["client_id"] == CLIENT_A
