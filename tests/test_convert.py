"""Decoded arguments become the dataclasses, NamedTuples and enums a function's hints name (lesspy_kernel.convert)."""

from __future__ import annotations

import dataclasses
import enum
import types
from typing import Dict, List, NamedTuple, Optional, Tuple

import numpy as np
import pytest

from lesspy_kernel.convert import ConversionError, convert, needs_conversion
from lesspy_kernel.dispatch import check_arguments
from lesspy_kernel.coerce import encode_value
from lesspy_kernel.wire import Record, Tag, decode_value

NS = types.SimpleNamespace


class Color(enum.IntEnum):
    RED = 1
    GREEN = 2


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Pair(NamedTuple):
    first_name: str
    score: int = 0


@dataclasses.dataclass
class Shape:
    name: str
    origin: Point
    corners: List[Point]
    by_name: Dict[str, Point]
    color: Color
    parent: Optional[Point] = None
    pairs: Tuple[Pair, ...] = ()


@dataclasses.dataclass
class Positive:
    v: int

    def __post_init__(self):
        if self.v <= 0:
            raise ValueError("v must be positive")


def test_nested_records_become_the_dataclasses_their_hints_name():
    value = NS(name="s", origin=NS(x=1.0, y=2.0), corners=[NS(x=3.0, y=4.0), None],
               by_name={"a": NS(x=5.0, y=6.0)}, color=2, parent=None, pairs=(NS(first_name="ada", score=3),))
    s = convert(value, Shape)
    assert s == Shape("s", Point(1.0, 2.0), [Point(3.0, 4.0), None], {"a": Point(5.0, 6.0)}, Color.GREEN, None,
                      (Pair("ada", 3),))
    assert type(s.color) is Color and type(s.pairs[0]) is Pair


def test_field_names_match_without_case_or_underscores_and_defaults_fill_in():
    assert convert(NS(FirstName="ada"), Pair) == Pair("ada", 0)
    assert convert({"X": 1.5}, Point) == Point(1.5, 0.0)
    assert convert(Point(1, 2), Point) == Point(1, 2)


@pytest.mark.parametrize("value, hint, words", [
    (NS(y=1.0), Point, "no field for x of Point"),
    (NS(x=1.0, z=2.0), Point, "the field 'z', which Point does not have"),
    (5, Point, "annotated Point but C# sends int"),
    (3, Color, "not a member of Color (RED=1, GREEN=2)"),
    (NS(v=-1), Positive, "refused the fields C# sent: ValueError: v must be positive"),
    ([NS(x="a", y=1.0), NS(q=1)], List[Point], "argument[1]: C# sends the field 'q'"),
])
def test_what_cannot_be_converted_is_named(value, hint, words):
    with pytest.raises(ConversionError) as e:
        convert(value, hint)
    assert words in str(e.value)


def test_plain_hints_leave_values_alone():
    arr = np.arange(3)
    for value, hint in [(arr, np.ndarray), ([1, 2], List[int]), (NS(x=1), None), ({"a": 1}, Dict[str, int])]:
        assert convert(value, hint) is value
    assert not needs_conversion(List[Dict[str, Tuple[int, float]]])
    assert needs_conversion(Optional[List[Dict[str, Point]]]) and needs_conversion(Color)


def test_check_arguments_converts_in_place_from_string_annotations():
    def area(s: Shape, scale: float, c: Color) -> float:
        return 0.0

    # the decoder gives SimpleNamespaces for records
    value = decode_value(encode_value(NS(x=1.0, y=2.0), Record((("x", Tag.FLOAT64), ("y", Tag.FLOAT64)), "P")))
    args = [NS(name="s", origin=value, corners=[], by_name={}, color=1), 2.0, 2]
    assert check_arguments("area", area, args) is None
    assert isinstance(args[0], Shape) and args[0].origin == Point(1.0, 2.0) and args[2] is Color.GREEN
    bad = [NS(name="s", origin=value, corners=[], by_name={}, color=7), 2.0, 1]
    assert "argument 's' of area.color: C# sends 7, which is not a member of Color" in check_arguments("area", area, bad)


def test_functions_without_record_hints_are_not_touched():
    def f(a, b: int):
        return a

    args = [NS(x=1), 2]
    assert check_arguments("f", f, args) is None and isinstance(args[0], NS)
