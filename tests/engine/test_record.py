"""msi_credential/_engine/record.py: the engine's value classes behave as frozen dataclasses did, at no import cost."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import typing
from typing import Any, Callable, ClassVar, Optional

import pytest

from msi_credential._engine.record import Record, field, replace
from msi_credential._engine.response import Token


def default_reader(value: str) -> str:
    return value.upper()


class Records:
    """The records under test, defined when a test runs: a record's fields are read when its class is defined, so
    a class defined at import would be read once, before any test (and before the mutation run's changes)."""

    def __init__(self) -> None:
        class Point(Record):
            x: int
            y: int = 0
            secret: Optional[str] = field(default=None, repr=False)
            tags: list[str] = field(default_factory=list)
            reader: Callable[[str], str] = default_reader
            note: str = field(default="", compare=False)

        class Counter(Record, frozen=False):
            count: int = 0

        class Labelled(Point):
            label: str = "none"

        self.Point, self.Counter, self.Labelled = Point, Counter, Labelled


@pytest.fixture
def records() -> Records:
    return Records()


def test_fields_are_positional_then_keyword_with_defaults_filled(records: Records) -> None:
    point = records.Point(1, secret="s")
    assert (point.x, point.y, point.secret, point.tags, point.reader, point.note) == (
        1,
        0,
        "s",
        [],
        default_reader,
        "",
    )


def test_factory_default_is_called_per_instance(records: Records) -> None:
    first, second = records.Point(1), records.Point(2)
    first.tags.append("a")
    assert second.tags == []


def test_function_default_is_not_bound_as_a_method(records: Records) -> None:
    assert records.Point(1).reader("abc") == "ABC"


def test_repr_shows_fields_in_order_without_hidden_ones(records: Records) -> None:
    text = repr(records.Point(1, 2, secret="hunter2"))
    assert text == "Point(x=1, y=2, tags=[], reader=" + repr(default_reader) + ", note='')"
    assert "hunter2" not in text


# change: `field()` compares a field only when told (`compare` defaults to False), or not at all
def test_equality_compares_the_compared_fields_of_the_same_class(records: Records) -> None:
    point, labelled = records.Point, records.Labelled
    assert point(1, 2) == point(1, 2)
    assert point(1, 2) != point(1, 3)
    assert point(1, tags=["a"]) != point(1, tags=["b"])
    assert point(1, reader=str.lower) != point(1)
    assert point(1, note="a") == point(1, note="b")
    assert point(1) != labelled(1)
    assert point(1) != (1, 0)


def test_frozen_record_refuses_assignment_and_deletion(records: Records) -> None:
    point = records.Point(1)
    with pytest.raises(AttributeError, match="frozen Point"):
        point.x = 2
    with pytest.raises(AttributeError, match="frozen Point"):
        del point.x
    assert point.x == 1


# change: the hash no longer depends on the values (`hash(None)`), or a mutable record's `__hash__` is not None
def test_frozen_record_hashes_by_value_and_a_mutable_one_is_unhashable(records: Records) -> None:
    assert hash(records.Point(1, tags=None)) == hash(records.Point(1, tags=None))
    assert hash(records.Point(1, tags=None)) != hash(records.Point(2, tags=None))
    counter = records.Counter()
    counter.count += 1
    assert counter.count == 1
    with pytest.raises(TypeError, match="unhashable type: 'Counter'"):
        hash(counter)


# change: deleting a field of a mutable record deletes nothing (`object.__delattr__(None, name)` and the like)
def test_a_field_of_a_mutable_record_can_be_deleted_as_on_a_dataclass(records: Records) -> None:
    counter = records.Counter(3)
    del counter.count
    assert "count" not in vars(counter)
    with pytest.raises(AttributeError):
        counter.count  # noqa: B018


def test_subclass_adds_fields_after_the_inherited_ones(records: Records) -> None:
    labelled = records.Labelled(1, label="l")
    assert (labelled.x, labelled.label) == (1, "l")
    assert repr(labelled).endswith("note='', label='l')")


# change: a class without annotations of its own is read as having `None` for them
def test_a_subclass_without_annotations_keeps_its_parents_fields(records: Records) -> None:
    class Described(records.Point):
        def describe(self) -> str:
            return f"at {self.x}"

    described = Described(1, 2)
    assert (described.describe(), described.y) == ("at 1", 2)
    assert repr(described).startswith("Described(x=1, y=2, tags=[]")


# change: a `ClassVar` (written `ClassVar[...]` or `typing.ClassVar[...]`) is taken for a field, or the fields
# after it are dropped
def test_class_variables_are_not_fields() -> None:
    class Tagged(Record):
        kind: ClassVar[str] = "tagged"
        name: str
        limit: typing.ClassVar[int] = 3
        size: int = 0

    tagged = Tagged("a")
    assert (tagged.name, tagged.size, Tagged.kind, Tagged.limit) == ("a", 0, "tagged", 3)
    assert repr(tagged) == "Tagged(name='a', size=0)"
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3 were given"):
        Tagged("a", 1, 2)


# change: a field's default is taken for its `_Field` spec, or for None
def test_a_plain_default_is_the_value_and_not_a_spec(records: Records) -> None:
    point = records.Point(1)
    assert (point.y, point.secret, point.note) == (0, None, "")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda point: point(), "missing required argument: 'x'"),
        (
            lambda point: point(1, 2, 3, [], default_reader, "", 7),
            "takes 6 positional arguments but 7 were given",
        ),
        (lambda point: point(1, x=2), "multiple values for argument 'x'"),
        (lambda point: point(1, z=2), "unexpected keyword argument 'z'"),
    ],
)
def test_wrong_arguments_are_a_type_error(records: Records, call: Callable[[Any], Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call(records.Point)


def test_a_required_field_after_a_default_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="field 'b' without a default follows one with a default"):

        class Broken(Record):
            a: int = 0
            b: int


# change: the error's message is altered
def test_field_refuses_a_default_and_a_factory() -> None:
    with pytest.raises(ValueError, match=r"^cannot specify both default and default_factory$"):
        field(default=1, default_factory=list)


def test_replace_copies_with_changes(records: Records) -> None:
    point = records.Point(1, 2, secret="s")
    moved = replace(point, y=5)
    assert (moved.x, moved.y, moved.secret) == (1, 5, "s")
    assert point.y == 2


def test_records_pickle_by_value() -> None:
    token = Token(token="t", expires_on=2, refresh_on=1, body={"access_token": "t"})
    assert pickle.loads(pickle.dumps(token)) == token


def test_first_token_path_defines_no_dataclass() -> None:
    """The credential's modules, its engine and every source import without the ``dataclasses`` module: its code
    generation at class definition is what made the first token slow (benchmarks/cold_start.py). Under the mutation
    run (mutmut's trampolines in every module import it themselves) only the classes are checked."""
    code = (
        "import sys, inspect, msi_credential._credential, msi_credential.aio._credential\n"
        "import msi_credential._engine.sources as sources\n"
        "engine = [m for name, m in sys.modules.items() if name.startswith('msi_credential._engine')]\n"
        "classes = [c for m in engine for _, c in inspect.getmembers(m, inspect.isclass)]\n"
        "print(sorted({c.__name__ for c in classes if hasattr(c, '__dataclass_fields__')}))\n"
        "print('mutmut' in sys.modules, 'dataclasses' in sys.modules)\n"
    )
    environ = {key: value for key, value in os.environ.items() if not key.upper().endswith("PROXY")}
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=environ, check=True, timeout=60
    )
    dataclass_classes, loaded = completed.stdout.strip().splitlines()
    assert dataclass_classes == "[]"
    if loaded.startswith("False"):  # not under mutmut
        assert loaded == "False False"
