"""msi_credential/_engine/identity.py: ``identity_from_arguments``, system-assigned or exactly one user-assigned
selector, called directly; the refusals word for word.
"""

from __future__ import annotations

from typing import Any

import pytest

from msi_credential._engine.identity import Identity, identity_from_arguments

GUID = "0b7a6d1c-2f0e-4c2b-9a57-8f7d2e1c3b4a"
OTHER_GUID = "9f8e7d6c-5b4a-4321-8765-43210fedcba9"
RESOURCE_ID = "/subscriptions/s/resourceGroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"


def test_no_arguments_is_system_assigned() -> None:
    identity = identity_from_arguments()
    assert identity == Identity()
    assert identity.kind == "system"
    assert identity.value is None
    assert identity.extra == ()
    assert not identity.user_assigned


def test_empty_identity_config_is_system_assigned() -> None:
    assert identity_from_arguments(identity_config={}) == Identity()


@pytest.mark.parametrize(
    ("keyword", "value"),
    [("client_id", GUID), ("object_id", GUID), ("resource_id", RESOURCE_ID)],
)
def test_each_keyword_selector_gives_that_user_assigned_identity(keyword: str, value: str) -> None:
    identity = identity_from_arguments(**{keyword: value})
    assert identity.kind == keyword
    assert identity.value == value
    assert identity.user_assigned
    assert identity.extra == ()


@pytest.mark.parametrize(
    ("key", "kind", "value"),
    [
        ("client_id", "client_id", GUID),
        ("object_id", "object_id", GUID),
        ("resource_id", "resource_id", RESOURCE_ID),
        ("msi_res_id", "resource_id", RESOURCE_ID),
        ("mi_res_id", "resource_id", RESOURCE_ID),
    ],
)
def test_identity_config_spellings_select_the_identity(key: str, kind: str, value: str) -> None:
    identity = identity_from_arguments(identity_config={key: value})
    assert identity.kind == kind
    assert identity.value == value
    assert identity.extra == ()


def test_identity_config_extra_keys_are_kept_as_extra_in_order() -> None:
    identity = identity_from_arguments(
        client_id=GUID, identity_config={"x-custom": "1", "bypass_cache": "true"}
    )
    assert identity.kind == "client_id"
    assert identity.value == GUID
    assert identity.extra == (("x-custom", "1"), ("bypass_cache", "true"))


def test_identity_config_extra_keys_alone_stay_system_assigned() -> None:
    identity = identity_from_arguments(identity_config={"foo": "bar"})
    assert identity.kind == "system"
    assert identity.value is None
    assert identity.extra == (("foo", "bar"),)


def test_identity_config_none_values_are_ignored() -> None:
    identity = identity_from_arguments(client_id=GUID, identity_config={"object_id": None, "foo": None})
    assert identity == Identity(kind="client_id", value=GUID)


def test_cache_value_is_lower_case_and_empty_for_system() -> None:
    assert identity_from_arguments(client_id=GUID.upper()).cache_value == GUID
    assert identity_from_arguments().cache_value == ""


@pytest.mark.parametrize(
    "arguments",
    [
        {"client_id": GUID, "object_id": OTHER_GUID},
        {"client_id": GUID, "resource_id": RESOURCE_ID},
        {"object_id": GUID, "resource_id": RESOURCE_ID},
        {"client_id": GUID, "object_id": OTHER_GUID, "resource_id": RESOURCE_ID},
        {"client_id": GUID, "object_id": GUID},
        {"identity_config": {"client_id": GUID, "object_id": OTHER_GUID}},
        {"identity_config": {"msi_res_id": RESOURCE_ID, "mi_res_id": RESOURCE_ID}},
        {"identity_config": {"resource_id": RESOURCE_ID, "msi_res_id": RESOURCE_ID}},
    ],
    ids=[
        "client+object",
        "client+resource",
        "object+resource",
        "all-three",
        "equal-values",
        "config-client+object",
        "config-msi+mi-res-id-equal",
        "config-resource+msi-res-id",
    ],
)
def test_more_than_one_selector_is_value_error(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at most one"):
        identity_from_arguments(**arguments)


@pytest.mark.parametrize(
    ("keyword", "config_key"),
    [
        ("client_id", "client_id"),
        ("client_id", "object_id"),
        ("object_id", "msi_res_id"),
        ("resource_id", "mi_res_id"),
        ("resource_id", "resource_id"),
    ],
)
def test_one_keyword_plus_one_identity_config_selector_is_value_error(keyword: str, config_key: str) -> None:
    with pytest.raises(ValueError, match="at most one"):
        identity_from_arguments(**{keyword: GUID}, identity_config={config_key: GUID})


@pytest.mark.parametrize("value", [123, b"guid", ["guid"], {"id": "x"}, 1.5, True])
@pytest.mark.parametrize("keyword", ["client_id", "object_id", "resource_id"])
def test_non_string_keyword_value_is_value_error(keyword: str, value: Any) -> None:
    with pytest.raises(ValueError):
        identity_from_arguments(**{keyword: value})


@pytest.mark.parametrize("value", ["", " ", "\t\n", "abc\x00", "a\nb"])
@pytest.mark.parametrize("keyword", ["client_id", "object_id", "resource_id"])
def test_empty_whitespace_or_control_keyword_value_is_value_error(keyword: str, value: str) -> None:
    with pytest.raises(ValueError):
        identity_from_arguments(**{keyword: value})


@pytest.mark.parametrize("key", ["client_id", "object_id", "resource_id", "msi_res_id", "mi_res_id", "extra"])
@pytest.mark.parametrize("value", [123, "", "  ", b"x", "a\x01"])
def test_bad_identity_config_value_is_value_error(key: str, value: Any) -> None:
    with pytest.raises(ValueError):
        identity_from_arguments(identity_config={key: value})


@pytest.mark.parametrize("config", [{"": "x"}, {1: "x"}, {None: "x"}])
def test_bad_identity_config_key_is_value_error(config: dict[Any, Any]) -> None:
    with pytest.raises(ValueError):
        identity_from_arguments(identity_config=config)


@pytest.mark.parametrize("config", [["client_id", GUID], "client_id=x", 42])
def test_identity_config_that_is_not_a_mapping_is_value_error(config: Any) -> None:
    with pytest.raises(ValueError):
        identity_from_arguments(identity_config=config)


def test_describe_names_the_selector_kind_not_the_value() -> None:
    assert identity_from_arguments().describe() == "system-assigned identity"
    description = identity_from_arguments(client_id=GUID).describe()
    assert "client_id" in description
    assert GUID not in description


# --- the words of a refusal, identity_config edges ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"client_id": 7}, "client_id must be a string, not int"),
        ({"object_id": " \n "}, "object_id must be a non-empty string without control characters"),
        (
            {"identity_config": {"mi_res_id": "\x00"}},
            "identity_config['mi_res_id'] must be a non-empty string without control characters",
        ),
        (
            {"identity_config": ["client_id"]},
            "identity_config must be a mapping of parameter names to strings",
        ),
        ({"identity_config": {"": "x"}}, "identity_config keys must be non-empty strings"),
        (
            {"client_id": "a", "identity_config": {"msi_res_id": "/r"}},
            "specify at most one of client_id, object_id and resource_id "
            "(got client_id, identity_config['msi_res_id']); a credential has one identity",
        ),
    ],
)
def test_identity_arguments_that_are_refused_say_which_and_why(
    arguments: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        identity_from_arguments(**arguments)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_identity_config_entries_after_a_none_value_are_still_read() -> None:
    identity = identity_from_arguments(identity_config={"skipped": None, "api-extra": "1", "client_id": "c"})
    assert identity == Identity(kind="client_id", value="c", extra=(("api-extra", "1"),))
