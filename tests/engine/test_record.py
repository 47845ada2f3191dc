"""msi_credential/_engine/record.py: the engine's value classes behave as frozen dataclasses did, at no import cost."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from typing import Any, Callable, Optional

import pytest

from msi_credential._engine.record import Record, field, replace


def default_reader(value: str) -> str:
    return value.upper()


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


def test_fields_are_positional_then_keyword_with_defaults_filled() -> None:
    point = Point(1, secret="s")
    assert (point.x, point.y, point.secret, point.tags, point.note) == (1, 0, "s", [], "")


def test_factory_default_is_called_per_instance() -> None:
    first, second = Point(1), Point(2)
    first.tags.append("a")
    assert second.tags == []


def test_function_default_is_not_bound_as_a_method() -> None:
    assert Point(1).reader("abc") == "ABC"


def test_repr_shows_fields_in_order_without_hidden_ones() -> None:
    text = repr(Point(1, 2, secret="hunter2"))
    assert text == "Point(x=1, y=2, tags=[], reader=" + repr(default_reader) + ", note='')"
    assert "hunter2" not in text


def test_equality_compares_the_compared_fields_of_the_same_class() -> None:
    assert Point(1, 2) == Point(1, 2)
    assert Point(1, 2) != Point(1, 3)
    assert Point(1, note="a") == Point(1, note="b")
    assert Point(1) != Labelled(1)
    assert Point(1) != (1, 0)


def test_frozen_record_refuses_assignment_and_deletion() -> None:
    point = Point(1)
    with pytest.raises(AttributeError, match="frozen Point"):
        point.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError, match="frozen Point"):
        del point.x  # type: ignore[misc]
    assert point.x == 1


def test_frozen_record_hashes_by_value_and_a_mutable_one_is_unhashable() -> None:
    assert hash(Point(1, tags=None)) == hash(Point(1, tags=None))  # type: ignore[arg-type]
    counter = Counter()
    counter.count += 1
    assert counter.count == 1
    with pytest.raises(TypeError):
        hash(counter)


def test_subclass_adds_fields_after_the_inherited_ones() -> None:
    labelled = Labelled(1, label="l")
    assert (labelled.x, labelled.label) == (1, "l")
    assert repr(labelled).endswith("note='', label='l')")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: Point(), "missing required argument: 'x'"),
        (lambda: Point(1, 2, 3, [], default_reader, "", 7), "takes 6 positional arguments but 7 were given"),
        (lambda: Point(1, x=2), "multiple values for argument 'x'"),
        (lambda: Point(1, z=2), "unexpected keyword argument 'z'"),
    ],
)
def test_wrong_arguments_are_a_type_error(call: Callable[[], Any], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_a_required_field_after_a_default_is_refused_at_definition() -> None:
    with pytest.raises(TypeError, match="field 'b' without a default follows one with a default"):

        class Broken(Record):
            a: int = 0
            b: int


def test_field_refuses_a_default_and_a_factory() -> None:
    with pytest.raises(ValueError, match="both default and default_factory"):
        field(default=1, default_factory=list)


def test_replace_copies_with_changes() -> None:
    point = Point(1, 2, secret="s")
    moved = replace(point, y=5)
    assert (moved.x, moved.y, moved.secret) == (1, 5, "s")
    assert point.y == 2


def test_records_pickle_by_value() -> None:
    point = Point(1, 2, secret="s", tags=["a"])
    assert pickle.loads(pickle.dumps(point)) == point


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
