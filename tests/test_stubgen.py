"""lesspy_kernel.stubgen: the C# interface generated from type hints, rule by rule, then compiled for real with mcs."""

from __future__ import annotations

import asyncio
import collections.abc
import dataclasses
import datetime
import enum
import functools
import importlib.util
import sys
import textwrap
import typing
import uuid
from typing import Any, Annotated, Dict, List, NewType, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt
import pytest

from lesspy_kernel.stubgen import AUTO, HEADER, SUPPORTED, camel_case, csharp_stub, pascal_case, stub_for_module


def members(functions: Dict[str, Any], **kw) -> List[str]:
    """The stripped, non-blank lines inside the interface's braces."""
    raw = csharp_stub(functions, **kw).splitlines()
    start = next(i for i, line in enumerate(raw) if "public interface" in line)
    indent = raw[start][: len(raw[start]) - len(raw[start].lstrip())]
    assert raw[start + 1] == indent + "{"
    end = raw.index(indent + "}", start)
    return [line.strip() for line in raw[start + 2:end] if line.strip()]


def stub_of(fn, name: Optional[str] = None) -> List[str]:
    return members({name or fn.__name__: fn})


def hinted(params: str, ret: str, name: str = "f", doc: Optional[str] = None, **names):
    """A function built from source with the given annotations, its globals holding what the tests use.
    (This file uses `from __future__ import annotations`, so building from source also keeps hints honest.)"""
    ns = dict(np=np, npt=npt, typing=typing, collections=collections, Any=Any, Optional=Optional, List=List,
              Tuple=Tuple, Sequence=Sequence, Union=Union, Dict=Dict, Annotated=Annotated, datetime=datetime,
              uuid=uuid, **names)
    body = f"    {doc!r}\n" if doc is not None else ""
    exec(f"def {name}({params}) -> {ret}:\n{body}    pass\n", ns)
    return ns[name]


def one(params: str, ret: str, name: str = "f") -> str:
    """The single method line generated for a function."""
    lines = stub_of(hinted(params, ret, name))
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------------------------------ scalars


@pytest.mark.parametrize("py, cs", [
    ("int", "long"), ("float", "double"), ("str", "string"), ("bool", "bool"), ("bytes", "byte[]"),
    ("np.float32", "float"), ("np.float64", "double"), ("np.int32", "int"), ("np.int64", "long"),
    ("np.bool_", "bool"),
])
def test_scalar_types(py, cs):
    assert one(f"a: {py}", py) == f'[PythonImport("f")] {cs} F({cs} a);'


@pytest.mark.parametrize("ret", ["None", "type(None)"])
def test_none_return_is_void(ret):
    assert one("a: int, b: float", ret) == '[PythonImport("f")] void F(long a, double b);'


def test_no_parameters():
    assert one("", "int") == '[PythonImport("f")] long F();'


def test_defaults_are_optional_parameters():
    assert one("a: int, k: float = 2.0, s: str = 'x\"y'", "float") == \
        '[PythonImport("f")] double F(long a, double k = 2.0, string s = "x\\"y");'


def test_none_is_not_a_parameter_type():
    assert one("a: None", "int") == (
        "// skipped f(a): parameter 'a' is annotated None, which has no C# counterpart in lesspy as a parameter "
        f"(None is only a return type); use one of {SUPPORTED}")


# ------------------------------------------------------------------------------------------------ lists


@pytest.mark.parametrize("py, cs", [
    ("list[int]", "List<long>"), ("List[float]", "List<double>"), ("Sequence[str]", "IReadOnlyList<string>"),
    ("collections.abc.Sequence[int]", "IReadOnlyList<long>"), ("typing.MutableSequence[bool]", "IList<bool>"),
    ("list[list[int]]", "List<List<long>>"), ("tuple[int, ...]", "IReadOnlyList<long>"),
    ("list[np.ndarray]", "List<NdArray>"), ("list[Optional[int]]", "List<long?>"),
])
def test_lists(py, cs):
    assert one(f"xs: {py}", py) == f'[PythonImport("f")] {cs} F({cs} xs);'
    assert "using System.Collections.Generic;" in csharp_stub({"f": hinted(f"xs: {py}", "int")})


@pytest.mark.parametrize("py, cs", [
    ("dict[str, int]", "Dictionary<string, long>"), ("Dict[str, list[float]]", "Dictionary<string, List<double>>"),
    ("typing.Mapping[str, str]", "IReadOnlyDictionary<string, string>"),
])
def test_dicts(py, cs):
    assert one(f"d: {py}", py) == f'[PythonImport("f")] {cs} F({cs} d);'


@pytest.mark.parametrize("py, shown", [("list", "list"), ("List", "List"), ("dict", "dict")])
def test_bare_containers_skipped(py, shown):
    assert one(f"xs: {py}", "int") == (
        f"// skipped f(xs): parameter 'xs' is annotated {shown}, which has no C# counterpart in lesspy without "
        f"element types: say them, e.g. list[float] or dict[str, int]; use one of {SUPPORTED}")


def test_dict_keys_must_be_str():
    assert one("d: dict[int, str]", "int") == (
        "// skipped f(d): parameter 'd' is annotated dict[int, str], which has no C# counterpart in lesspy: "
        f"dictionary keys must be str (C# Dictionary<string, T>); use one of {SUPPORTED}")


# ------------------------------------------------------------------------------------------------ tuples


@pytest.mark.parametrize("py, cs", [
    ("tuple[int, float]", "(long, double)"),
    ("Tuple[int, str]", "(long, string)"),
    ("tuple[int, tuple[float, str]]", "(long, (double, string))"),
    ("tuple[tuple[int, int], tuple[bytes, tuple[bool, np.ndarray]]]", "((long, long), (byte[], (bool, NdArray)))"),
    ("tuple[int, list[int]]", "(long, List<long>)"),
    ("tuple[int, int, int, int, int, int, int]", "(long, long, long, long, long, long, long)"),
])
def test_tuples(py, cs):
    assert one(f"t: {py}", py) == f'[PythonImport("f")] {cs} F({cs} t);'


def test_one_tuple_is_valuetuple_and_needs_system():
    text = csharp_stub({"f": hinted("t: tuple[int]", "tuple[int, tuple[str]]")})
    assert '[PythonImport("f")] (long, ValueTuple<string>) F(ValueTuple<long> t);' in text
    assert text.splitlines()[2:4] == ["using System;", "using LessPy;"]


def test_no_system_without_one_tuples():
    text = csharp_stub({"f": hinted("t: tuple[int, int]", "int")})
    assert "using System;" not in text
    assert text.splitlines()[2] == "using LessPy;"


@pytest.mark.parametrize("py, why", [
    ("tuple[int, int, int, int, int, int, int, int]",
     "a tuple of 8 elements, which has no C# counterpart in lesspy (tuples map to ValueTuple of 1..7 elements)"),
    ("tuple[int, tuple[int, set]]", "which has no C# counterpart in lesspy"),
    ("tuple[int, None]", "which has no C# counterpart in lesspy (a tuple element cannot be None)"),
    ("tuple", "which has no C# counterpart in lesspy without element types: say them, e.g. tuple[int, float]"),
    ("Tuple", "which has no C# counterpart in lesspy without element types: say them, e.g. tuple[int, float]"),
])
def test_unsupported_tuples(py, why):
    line = one("a: int", py)
    assert line.startswith("// skipped f(a): the return type is annotated ")
    assert line.endswith(f", {why}; use one of {SUPPORTED}")


def test_empty_tuple_skipped():
    line = one("a: int", "tuple[()]")
    assert line.startswith("// skipped f(a): the return type is annotated ")
    assert "a tuple of 0 elements, which has no C# counterpart in lesspy" in line


# ------------------------------------------------------------------------------------------------ ndarray


def test_plain_ndarray():
    assert stub_of(hinted("a: np.ndarray", "np.ndarray")) == ['[PythonImport("f")] NdArray F(NdArray a);']


def test_ndarray_dtype_in_docs():
    lines = stub_of(hinted("a: npt.NDArray[np.float32], b: np.ndarray[Any, np.dtype[np.int64]], k: float",
                           "npt.NDArray[np.float64]"))
    assert lines == [
        '/// <param name="a">float32 array</param>',
        '/// <param name="b">int64 array</param>',
        "/// <returns>float64 array</returns>",
        '[PythonImport("f")] NdArray F(NdArray a, NdArray b, double k);',
    ]


@pytest.mark.parametrize("py", ["npt.NDArray", "npt.NDArray[Any]", "npt.NDArray[np.floating]",
                                "np.ndarray[Any, np.dtype[Any]]"])
def test_ndarray_unknown_dtype_has_no_doc(py):
    assert stub_of(hinted(f"a: {py}", "int")) == ['[PythonImport("f")] long F(NdArray a);']


def test_ndarray_of_unsupported_dtype_skipped():
    line = one("a: npt.NDArray[np.str_]", "int")
    assert line.startswith("// skipped f(a): parameter 'a' is annotated numpy.ndarray[")
    assert ("an array of dtype str, which lesspy cannot carry (supported dtypes: bool, int8, uint8, int16, uint16, "
            "int32, uint32, int64, uint64, float16, float32, float64, complex64, complex128)") in line


# ------------------------------------------------------------------------------------------------ Optional


@pytest.mark.parametrize("py, cs", [
    ("Optional[str]", "string"), ("Optional[bytes]", "byte[]"), ("Optional[list[int]]", "List<long>"),
    ("Optional[List[List[int]]]", "List<List<long>>"), ("Optional[np.ndarray]", "NdArray"),
    ("Union[None, str]", "string"), ("Optional[npt.NDArray[np.uint8]]", "NdArray"),
])
def test_optional_reference_types(py, cs):
    lines = stub_of(hinted(f"a: {py} = None", py))
    assert lines[-1] == f'[PythonImport("f")] {cs} F({cs} a = null);'


def test_optional_ndarray_keeps_its_dtype_doc():
    assert stub_of(hinted("a: Optional[npt.NDArray[np.uint8]] = None", "Optional[npt.NDArray[np.int16]]")) == [
        '/// <param name="a">uint8 array</param>',
        "/// <returns>int16 array</returns>",
        '[PythonImport("f")] NdArray F(NdArray a = null);']


@pytest.mark.skipif(sys.version_info < (3, 10), reason="X | None needs Python 3.10")
def test_pep604_optional():
    assert one("a: str | None", "bytes | None") == '[PythonImport("f")] byte[] F(string a);'


@pytest.mark.parametrize("py, cs", [("Optional[int]", "long?"), ("Optional[float]", "double?"),
                                    ("Optional[tuple[int, int]]", "(long, long)?"), ("Optional[bool]", "bool?"),
                                    ("Optional[datetime.datetime]", "DateTime?"), ("Optional[np.int32]", "int?")])
def test_optional_value_types_are_nullable(py, cs):
    assert one(f"a: {py}", py) == f'[PythonImport("f")] {cs} F({cs} a);'


def test_none_default_makes_a_value_type_nullable():
    assert one("a: int = None, b: float = 1.5", "int") == '[PythonImport("f")] long F(long? a = null, double b = 1.5);'


# ------------------------------------------------------------------------------------------------ no counterpart


class Point:
    pass


@pytest.mark.parametrize("py, shown, why", [
    ("set[int]", "set[int]", "which has no C# counterpart in lesspy"),
    ("frozenset[str]", "frozenset[str]", "which has no C# counterpart in lesspy"),
    ("Any", "Any", "which has no C# counterpart in lesspy"),
    ("object", "object", "which has no C# counterpart in lesspy"),
    ("complex", "complex", "which has no C# counterpart in lesspy"),
    ("Point", f"{Point.__module__}.Point", "which has no C# counterpart in lesspy"),
    ("Union[int, str]", "Union[int, str]", "a Union, which has no C# counterpart in lesspy: use a single type"),
    ("Optional[Union[str, bytes]]", "Union[str, bytes, NoneType]",
     "a Union, which has no C# counterpart in lesspy: use a single type"),
])
def test_no_counterpart_return(py, shown, why):
    line = stub_of(hinted("a: int", py, Point=Point))[0]
    assert line == f"// skipped f(a): the return type is annotated {shown}, {why}; use one of {SUPPORTED}"


def test_several_problems_in_one_comment():
    assert one("a: dict, b: int, c: set", "Any") == (
        "// skipped f(a, b, c): parameter 'a' is annotated dict, which has no C# counterpart in lesspy without "
        "element types: say them, e.g. list[float] or dict[str, int]; "
        "parameter 'c' is annotated set, which has no C# counterpart in lesspy; "
        "the return type is annotated Any, which has no C# counterpart in lesspy; "
        f"use one of {SUPPORTED}")


def test_annotated_and_newtype_are_seen_through():
    UserId = NewType("UserId", int)

    def f(a: Annotated[float, "metres"], u: UserId) -> Annotated[str, "x"]:
        pass

    f.__annotations__ = {"a": Annotated[float, "metres"], "u": UserId, "return": Annotated[str, "x"]}
    assert stub_of(f) == ['[PythonImport("f")] string F(double a, long u);']


# ------------------------------------------------------------------------------------------------ missing hints


def test_missing_hints_comment():
    def add(a, b):
        return a + b

    assert stub_of(add) == [
        "// add(a, b): annotate parameters a, b and the return type to generate this method, "
        "e.g. def add(a: int, b: int) -> int"]


def test_missing_one_parameter_keeps_the_known_hints_in_the_example():
    assert one("a: float, b", "str", name="g") == (
        "// g(a, b): annotate parameter b to generate this method, e.g. def g(a: float, b: int) -> str")


def test_missing_return_only():
    def h(a: int, s: str):
        pass

    assert stub_of(h) == ["// h(a, s): annotate the return type to generate this method, "
                          "e.g. def h(a: int, s: str) -> int"]


# ------------------------------------------------------------------------------------------------ parameter kinds


def test_required_keyword_only_cannot_be_called():
    assert one("a: int, *, scale: float", "int") == (
        "// skipped f(a): it cannot be called from C#, which passes arguments by position only; give keyword-only "
        "parameter scale a default or make it positional")
    assert one("a: int, *, x: int, y", "int") == (
        "// skipped f(a): it cannot be called from C#, which passes arguments by position only; give keyword-only "
        "parameters x, y a default or make them positional")


def test_star_args_and_keyword_defaults_are_left_out_with_a_note():
    assert stub_of(hinted("a: int, *rest: int, scale: float = 1.0, **opts", "int")) == [
        "// f(a): C# passes arguments by position only, so *rest, **opts stay empty and keyword-only parameter "
        "scale keeps its default",
        '[PythonImport("f")] long F(long a);']
    assert stub_of(hinted("*args", "int")) == [
        "// f(): C# passes arguments by position only, so *args stays empty",
        '[PythonImport("f")] long F();']


def test_positional_only_parameters():
    assert one("a: int, b: str, /", "int") == '[PythonImport("f")] long F(long a, string b);'


# ------------------------------------------------------------------------------------------------ names


def test_keywords_are_escaped():
    f = hinted("params: int, object: str, string: bytes, var: float", "int", name="object")
    assert stub_of(f) == ['[PythonImport("object")] long Object(long @params, string @object, byte[] @string, '
                          'double var);']


def test_keyword_parameter_in_param_doc_is_unescaped():
    lines = stub_of(hinted("params: npt.NDArray[np.float32]", "int"))
    assert lines == ['/// <param name="params">float32 array</param>',
                     '[PythonImport("f")] long F(NdArray @params);']


def test_invalid_method_names_become_comments():
    f = hinted("a: int", "int")
    assert members({"my-func": f, "2d": f, "a.b": f, "": f, "ok": f, "x\ny": f}) == [
        "// skipped : its name is not a valid C# method name; export it under a name made of letters, digits and '_'",
        "// skipped 2d: its name is not a valid C# method name; export it under a name made of letters, digits and '_'",
        "// skipped a.b: its name is not a valid C# method name; export it under a name made of letters, digits "
        "and '_'",
        "// skipped my-func: its name is not a valid C# method name; export it under a name made of letters, digits "
        "and '_'",
        '[PythonImport("ok")] long Ok(long a);',
        "// skipped x\\ny: its name is not a valid C# method name; export it under a name made of letters, digits "
        "and '_'",
    ]


def test_unicode_name_is_kept():
    assert stub_of(hinted("a: int", "int"), name="größe") == ['[PythonImport("größe")] long Größe(long a);']


def test_method_named_like_the_interface():
    assert members({"IMyApi": hinted("a: int", "int")}) == [
        "// skipped IMyApi: a method cannot have the interface's name; choose another --interface"]


def test_export_name_is_the_key_not_dunder_name():
    assert stub_of(hinted("a: int", "int", name="inner"), name="outer") == [
        '[PythonImport("outer")] long Outer(long a);']


# ------------------------------------------------------------------------------------------------ odd callables


def test_non_callables_builtins_and_classes():
    lines = members({"n": 3, "m": max, "P": Point})
    assert lines == [
        "// skipped P: it is a class, not a function; export a function that returns one of " + SUPPORTED,
        "// skipped m: its signature cannot be read (a builtin?); wrap it in a def with type hints",
        "// skipped n: it is not callable (its type is int)",
    ]


def test_wrapped_method_and_callable_object():
    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*a):
            return fn(*a)
        return wrapper

    class Scaler:
        def __call__(self, a: np.ndarray, k: float) -> np.ndarray:
            return a * k

        def method(self, n: int) -> int:
            """Doubles n."""
            return 2 * n

    wrapped = deco(hinted("a: int", "str"))
    s = Scaler()
    assert members({"w": wrapped, "c": s, "m": s.method}) == [
        '[PythonImport("c")] NdArray C(NdArray a, double k);',
        "/// <summary>Doubles n.</summary>",
        '[PythonImport("m")] long M(long n);',
        '[PythonImport("w")] string W(long a);',
    ]


def test_partial():
    p = functools.partial(hinted("a: int, b: float", "float"), 1)
    assert members({"p": p}) == ['[PythonImport("p")] double P(double b);']


# ------------------------------------------------------------------------------------------------ string hints


def test_string_annotations_resolve_in_the_function_globals():
    src = textwrap.dedent("""
        from __future__ import annotations
        import numpy as np
        import numpy.typing as npt
        from typing import Optional

        Vec = npt.NDArray[np.float32]

        def norm(v: Vec, eps: Optional[float] = None) -> float: ...
        def pair(a: int) -> tuple[int, str]: ...
    """)
    ns: Dict[str, Any] = {"__name__": "notebook"}
    exec(src, ns)
    assert members({"pair": ns["pair"]}) == ['[PythonImport("pair")] (long, string) Pair(long a);']
    assert members({"norm": ns["norm"]}) == ['/// <param name="v">float32 array</param>',
                                             '[PythonImport("norm")] double Norm(NdArray v, double? eps = null);']


def test_unresolvable_string_annotation_falls_back_per_annotation():
    def f(a: "int", b: "Undefined") -> "float":  # noqa: F821
        pass

    def g(a: "int", b: "list[int]") -> "float":
        pass

    assert members({"f": f, "g": g}) == [
        "// skipped f(a, b): parameter 'b' is annotated Undefined, which could not be evaluated (is the name "
        f"defined where the function is?); use one of {SUPPORTED}",
        '[PythonImport("g")] double G(long a, List<long> b);',
    ]


# ------------------------------------------------------------------------------------------------ docstrings


def test_docstring_one_line_escaped():
    lines = stub_of(hinted("a: int", "int", doc="Returns a < b && b > c."))
    assert lines == ["/// <summary>Returns a &lt; b &amp;&amp; b &gt; c.</summary>",
                     '[PythonImport("f")] long F(long a);']


def test_docstring_first_paragraph_multiline():
    doc = """Scale an array
        by k, in place.

        Details that stay in Python.
        """
    lines = stub_of(hinted("a: npt.NDArray[np.float32], k: float", "None", doc=doc))
    assert lines == ["/// <summary>",
                     "/// Scale an array",
                     "/// by k, in place.",
                     "/// </summary>",
                     '/// <param name="a">float32 array</param>',
                     '[PythonImport("f")] void F(NdArray a, double k);']


def test_blank_docstring_ignored():
    assert stub_of(hinted("a: int", "int", doc="   \n  ")) == ['[PythonImport("f")] long F(long a);']


# ------------------------------------------------------------------------------------------------ the file


def test_file_layout_without_namespace():
    f = hinted("a: int", "int", doc="Doc.")
    text = csharp_stub({"b": f, "a": hinted("x: str", "None")})
    assert text == (
        f"{AUTO}\n{HEADER}\n"
        "using LessPy;\n"
        "\n"
        "public interface IMyApi\n"
        "{\n"
        '    [PythonImport("a")] void A(string x);\n'
        "\n"
        "    /// <summary>Doc.</summary>\n"
        '    [PythonImport("b")] long B(long a);\n'
        "}\n")
    assert AUTO == "// <auto-generated/>"


def test_file_layout_with_namespace():
    text = csharp_stub({"a": hinted("x: str", "None")}, interface="INotebook", namespace="My.App")
    assert text == (
        f"{AUTO}\n{HEADER}\n"
        "using LessPy;\n"
        "\n"
        "namespace My.App\n"
        "{\n"
        "    public interface INotebook\n"
        "    {\n"
        '        [PythonImport("a")] void A(string x);\n'
        "    }\n"
        "}\n")


def test_empty_interface():
    """Compiles, and says what to do (a newcomer's first `%lesspy stub` has nothing yet)."""
    from lesspy_kernel import stubgen

    assert csharp_stub({}) == (f"{AUTO}\n{HEADER}\nusing LessPy;\n\npublic interface IMyApi\n{{\n"
                               f"    {stubgen.NOTHING_TO_STUB}\n}}\n")


def test_methods_in_name_order():
    f = hinted("a: int", "int")
    lines = members({"zeta": f, "alpha": f, "mid": f})
    assert [line.split('"')[1] for line in lines] == ["alpha", "mid", "zeta"]


@pytest.mark.parametrize("interface", ["", "1Api", "my-api", "I Api", "class", "IApi;", "A.B", "NdArray",
                                       "PythonImportAttribute"])
def test_invalid_interface_name(interface):
    with pytest.raises(ValueError, match="interface name"):
        csharp_stub({}, interface=interface)


@pytest.mark.parametrize("namespace", ["", "a..b", ".a", "a.", "My.class", "1a", "a b", "a-b", "a;b"])
def test_invalid_namespace(namespace):
    with pytest.raises(ValueError, match="namespace"):
        csharp_stub({}, namespace=namespace)


@pytest.mark.parametrize("namespace", ["A", "My.App", "_x.y2.Z", "Größe.Ü"])
def test_valid_namespaces(namespace):
    assert f"namespace {namespace}\n" in csharp_stub({}, namespace=namespace)


# ------------------------------------------------------------------------------------------------ real compile


COMPILE_MODULE = '''
from __future__ import annotations

import collections.abc
import datetime
import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import numpy.typing as npt


def add(a: int, b: int) -> int:
    """Adds a & b when a < b or a > b.

    Second paragraph, not in the summary."""
    return a + b


def scale(a: npt.NDArray[np.float32], k: float) -> npt.NDArray[np.float32]:
    """Multiply an array
    by k."""
    return a * k


def any_array(a: np.ndarray, b: np.ndarray[Any, np.dtype[np.int64]]) -> np.ndarray:
    return a


def greet(name: Optional[str] = None) -> Optional[str]:
    return name


def flags(b: bool, data: bytes, maybe: Optional[bytes]) -> bool:
    return b


def small(x: np.float32, y: np.float64, i: np.int32, j: np.int64) -> np.float32:
    return x


def ints(xs: list[int], ys: List[int], zs: Sequence[int], ws: collections.abc.Sequence[int]) -> list[int]:
    return xs


def jagged(rows: list[list[int]], more: Optional[List[List[int]]]) -> list[list[int]]:
    return rows


def nested(t: tuple[int, tuple[float, str]], one: Tuple[int], deep: tuple[tuple[int], tuple[bytes, np.ndarray]]
           ) -> tuple[int, float, str, bool, bytes, list[int], npt.NDArray[np.float64]]:
    return t


def nothing(params: int, object: str, string: float = 1.0) -> None:
    pass


def star(a: int, *rest: int, scale: float = 1.0, **opts) -> int:
    return a


def load(path: set[str]) -> int:
    return 0


class Color(enum.IntEnum):
    RED = 1
    DARK_BLUE = 2


class Access(enum.IntFlag):
    READ = 1
    WRITE = 2


@dataclass
class Point:
    """A point in the plane."""
    x: float
    y: float = 0.5


class Pair(NamedTuple):
    first_name: str
    score: int = 0


@dataclass
class Shape:
    name: str
    origin: Point
    corners: List[Point]
    color: Color = Color.RED
    parent: Optional[Point] = None
    pairs: Dict[str, Pair] = field(default_factory=dict)


def make_shape(name: str, origin: Optional[Point] = None, color: Color = Color.DARK_BLUE) -> Shape:
    return Shape(name, origin or Point(0), [])


async def fetch(url: str, access: Access, retries: Optional[int] = None) -> Dict[str, Pair]:
    return {}


async def ping() -> None:
    pass


def when(id: uuid.UUID, after: datetime.timedelta, since: datetime.datetime) -> Optional[datetime.datetime]:
    return None


def untyped(a, b):
    return a


def kwonly(a: int, *, b: int) -> int:
    return a


def countdown(n: int) -> collections.abc.Iterator[int]:
    """Counts down from n."""
    yield from range(n, 0, -1)
'''

USER = '''
using LessPy;
using Notebook.Api;

public class UsesTheStub
{
    public IMyApi Api;
}
'''


def test_stub_compiles_with_mcs(tmp_path, csharp_bin):
    from conftest import compile_csharp

    path = tmp_path / "compile_module.py"
    path.write_text(COMPILE_MODULE)
    stub = stub_for_module(str(path), "IMyApi", namespace="Notebook.Api")
    assert "(from compile_module.py)" in stub.splitlines()[1]
    for expected in [
        '[PythonImport("add")] long Add(long a, long b);',
        '[PythonImport("countdown")] IEnumerable<long> Countdown(long n);',
        "/// <summary>Adds a &amp; b when a &lt; b or a &gt; b.</summary>",
        '/// <param name="a">float32 array</param>',
        "/// <returns>float32 array</returns>",
        '[PythonImport("scale")] NdArray Scale(NdArray a, double k);',
        '/// <param name="b">int64 array</param>',
        '[PythonImport("any_array")] NdArray AnyArray(NdArray a, NdArray b);',
        '[PythonImport("greet")] string Greet(string name = null);',
        '[PythonImport("flags")] bool Flags(bool b, byte[] data, byte[] maybe);',
        '[PythonImport("small")] float Small(float x, double y, int i, long j);',
        '[PythonImport("ints")] List<long> Ints(List<long> xs, List<long> ys, IReadOnlyList<long> zs, '
        'IReadOnlyList<long> ws);',
        '[PythonImport("jagged")] List<List<long>> Jagged(List<List<long>> rows, List<List<long>> more);',
        '[PythonImport("nested")] (long, double, string, bool, byte[], List<long>, NdArray) Nested('
        '(long, (double, string)) t, ValueTuple<long> one, (ValueTuple<long>, (byte[], NdArray)) deep);',
        '[PythonImport("nothing")] void Nothing(long @params, string @object, double @string = 1.0);',
        "public class Point", "public double X { get; set; }", "public double Y { get; set; } = 0.5;",
        "public class Shape", "public List<Point> Corners { get; set; }", "public Color Color { get; set; } = Color.Red;",
        "[Flags]", "public enum Access", "public enum Color", "DarkBlue = 2,", "public class Pair",
        '[PythonImport("make_shape")] Shape MakeShape(string name, Point origin = null, Color color = Color.DarkBlue);',
        '[PythonImport("fetch")] Task<Dictionary<string, Pair>> Fetch(string url, Access access, long? retries = null, '
        'CancellationToken cancellationToken = default(CancellationToken));',
        '[PythonImport("ping")] Task Ping(CancellationToken cancellationToken = default(CancellationToken));',
        '[PythonImport("when")] DateTime? When(Guid id, TimeSpan after, DateTime since);',
        '[PythonImport("star")] long Star(long a);',
        "// skipped load(path): parameter 'path' is annotated set[str]",
        "// untyped(a, b): annotate parameters a, b and the return type",
        "// skipped kwonly(a): it cannot be called from C#",
        "using System;", "using System.Collections.Generic;", "using System.Threading;",
        "using System.Threading.Tasks;", "// <auto-generated/>",
    ]:
        assert expected in stub, f"{expected!r} not in:\n{stub}"

    (tmp_path / "IMyApi.cs").write_text(stub)
    (tmp_path / "User.cs").write_text(USER)
    dll = compile_csharp(csharp_bin, [tmp_path / "IMyApi.cs", tmp_path / "User.cs"], "StubCheck.dll",
                         extra=["-target:library"])
    assert dll.is_file()


def test_empty_and_all_skipped_stubs_compile(tmp_path, csharp_bin):
    from conftest import compile_csharp

    def untyped(a):
        return a

    sources = []
    for i, (functions, kw) in enumerate([({}, {}), ({"untyped": untyped, "x-y": untyped}, {"interface": "IOther"})]):
        p = tmp_path / f"Stub{i}.cs"
        p.write_text(csharp_stub(functions, **kw))
        sources.append(p)
    compile_csharp(csharp_bin, sources, "StubEmpty.dll", extra=["-target:library"])


# ------------------------------------------------------------------------------------------------ idiomatic C#


@pytest.mark.parametrize("py, pascal, camel", [
    ("add_ints", "AddInts", "addInts"), ("x", "X", "x"), ("RED", "Red", "red"), ("max_value_2", "MaxValue2", "maxValue2"),
    ("getHTTP", "GetHTTP", "getHTTP"), ("größe_wert", "GrößeWert", "größeWert"), ("a__b", "AB", "aB"),
])
def test_case_conversions(py, pascal, camel):
    assert (pascal_case(py), camel_case(py)) == (pascal, camel)


def test_methods_are_pascal_case_and_parameters_camel_case():
    assert one("max_value: int, min_value: float", "int", name="clip_values") == \
        '[PythonImport("clip_values")] long ClipValues(long maxValue, double minValue);'


def test_two_functions_with_one_csharp_name():
    f = hinted("a: int", "int")
    assert members({"add_ints": f, "addInts": f}) == [
        '[PythonImport("addInts")] long AddInts(long a);',
        "// skipped add_ints: its C# name AddInts is already the name of addInts; rename one"]


@pytest.mark.parametrize("params, cs", [
    ("a: bool = True, b: int = -3, c: float = float('inf')",
     "bool a = true, long b = -3, double c = double.PositiveInfinity"),
    ("a: np.float32 = 0.25, b: float = float('nan'), c: np.uint8 = 255", "float a = 0.25f, double b = double.NaN, byte c = 255"),
    ("a: str = 'tab\\there', b: Optional[str] = None", 'string a = "tab\\there", string b = null'),
    ("a: int = 2**70, b: int = 1", "long a, long b = 1"),
    ("a: list[int] = [], b: float = 1.0", "List<long> a, double b = 1.0"),
    ("a: datetime.timedelta = datetime.timedelta(1)", "TimeSpan a"),
    ("a: float = 1", "double a = 1.0"),
])
def test_defaults(params, cs):
    line = stub_of(hinted(params, "int"))[-1]
    assert line == f'[PythonImport("f")] long F({cs});'


def test_dropped_defaults_are_explained():
    assert stub_of(hinted("a: list[int] = [], b: float = 1.0", "int")) == [
        "// f(a, b): the default of a cannot be written as a C# constant, so C# must pass it",
        '[PythonImport("f")] long F(List<long> a, double b = 1.0);']


@dataclasses.dataclass
class Vec:
    """A vector.

    More text."""
    x: float
    y: float = 0.0


@dataclasses.dataclass
class Body:
    name: str
    where: Vec
    path: List[Vec]
    weight: Optional[float] = None
    by_name: Dict[str, Vec] = dataclasses.field(default_factory=dict)


class Score(typing.NamedTuple):
    player_name: str
    points: int = 10


class Mood(enum.IntEnum):
    HAPPY = 1
    VERY_SAD = -2


class Perm(enum.IntFlag):
    READ = 1
    WRITE = 2


class Big(enum.IntEnum):
    HUGE = 2**40


class Text(enum.Enum):
    A = "a"


@dataclasses.dataclass
class Node:
    value: int
    next: Optional["Node"] = None


@dataclasses.dataclass
class HasSet:
    items: set


def test_dataclasses_become_classes_declared_once():
    text = csharp_stub({"f": hinted("b: Body, v: Vec", "list[Body]", Body=Body, Vec=Vec)})
    assert text.count("public class Vec") == 1 and text.index("public class Vec") < text.index("public class Body")
    assert ("/// <summary>A vector.</summary>\n/// <remarks>The Python dataclass test_stubgen.Vec.</remarks>\n"
            "public class Vec\n{\n    public double X { get; set; }\n    public double Y { get; set; } = 0.0;\n}") in text
    for line in ["    public string Name { get; set; }", "    public Vec Where { get; set; }",
                 "    public List<Vec> Path { get; set; }", "    public double? Weight { get; set; }",
                 "    public Dictionary<string, Vec> ByName { get; set; }",
                 '[PythonImport("f")] List<Body> F(Body b, Vec v);']:
        assert line in text, line


def test_namedtuple_and_enums():
    text = csharp_stub({"f": hinted("s: Score, m: Mood = Mood.VERY_SAD, p: Perm = Perm.READ", "Big",
                                    Score=Score, Mood=Mood, Perm=Perm, Big=Big)})
    for line in ["public class Score", "    public string PlayerName { get; set; }", "    public long Points { get; set; } = 10;",
                 "public enum Mood\n{\n    Happy = 1,\n    VerySad = -2,\n}", "[Flags]\npublic enum Perm\n",
                 "public enum Big : long", '[PythonImport("f")] Big F(Score s, Mood m = Mood.VerySad, Perm p = Perm.Read);',
                 "using System;"]:
        assert line in text, line


@pytest.mark.parametrize("hint, names, why", [
    ("Node", {"Node": Node}, "Node, which contains itself"),
    ("HasSet", {"HasSet": HasSet}, "HasSet, whose field 'items' is annotated set"),
    ("Text", {"Text": Text}, "an Enum whose values are not all int (Text): use enum.IntEnum"),
])
def test_unmappable_records_and_enums_say_why(hint, names, why):
    line = stub_of(hinted(f"a: {hint}", "int", **names))[0]
    assert line.startswith("// skipped f(a): parameter 'a' is annotated ") and why in line, line


def test_a_record_named_like_a_used_type_is_refused():
    List_ = dataclasses.make_dataclass("List", [("x", int)])
    line = stub_of(hinted("a: L", "int", L=List_))[0]
    assert "would hide the LessPy/System type" in line


def test_async_functions_return_tasks_with_a_cancellation_token():
    async def fetch(url: str, cancellation_token: int = 0) -> Optional[Vec]:
        """Fetch it."""

    async def ping() -> None:
        pass

    assert members({"fetch": fetch, "ping": ping}) == [
        "/// <summary>Fetch it.</summary>",
        '/// <param name="cancellationToken">Abandons the call: C# stops waiting and the server cancels the Python '
        'call (or interrupts it where it can).</param>',
        '[PythonImport("fetch")] Task<Vec> Fetch(string url, long cancellation_token = 0, '
        'CancellationToken cancellationToken = default(CancellationToken));',
        '/// <param name="cancellationToken">Abandons the call: C# stops waiting and the server cancels the Python '
        'call (or interrupts it where it can).</param>',
        '[PythonImport("ping")] Task Ping(CancellationToken cancellationToken = default(CancellationToken));']
    text = csharp_stub({"ping": ping})
    assert "using System.Threading;\nusing System.Threading.Tasks;\n" in text
    assert asyncio.iscoroutinefunction(ping)


def test_google_and_numpy_docstrings():
    google = '''Scale a & b.

    Args:
        a: the array,
            scaled in place.
        k (float): the factor.

    Returns:
        the array <scaled>.
    '''
    numpy_doc = '''Scale.

    Parameters
    ----------
    a : ndarray
        The array.
    k : float
        The factor.

    Returns
    -------
    ndarray
    '''
    assert stub_of(hinted("a: npt.NDArray[np.float32], k: float", "int", doc=google)) == [
        "/// <summary>Scale a &amp; b.</summary>",
        '/// <param name="a">float32 array: the array, scaled in place.</param>',
        '/// <param name="k">the factor.</param>',
        "/// <returns>the array &lt;scaled&gt;.</returns>",
        '[PythonImport("f")] long F(NdArray a, double k);']
    assert stub_of(hinted("a: np.ndarray, k: float", "int", doc=numpy_doc)) == [
        "/// <summary>Scale.</summary>",
        '/// <param name="a">The array.</param>',
        '/// <param name="k">The factor.</param>',
        "/// <returns>ndarray</returns>",
        '[PythonImport("f")] long F(NdArray a, double k);']


def test_stub_for_module_exports_what_the_server_exports(tmp_path):
    path = tmp_path / "my_module.py"
    path.write_text("from os.path import join\nfrom dataclasses import dataclass\n\n"
                    "@dataclass\nclass P:\n    x: int\n\n"
                    "def _hidden(a: int) -> int: ...\n"
                    "def shown(p: P) -> P: ...\n")
    text = stub_for_module(str(path), "IThing")
    assert '[PythonImport("shown")] P Shown(P p);' in text and "public class P" in text
    assert "join" not in text and "_hidden" not in text and "public interface IThing" in text
    assert "my_module" not in sys.modules and "_lesspy_stub_my_module" not in sys.modules
    with pytest.raises(FileNotFoundError):
        stub_for_module(str(tmp_path / "nope.py"))


# ------------------------------------------------------------------------------------------------ for real


E2E_MODULE = '''
from __future__ import annotations

import datetime
import enum
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np
import numpy.typing as npt


class Color(enum.IntEnum):
    RED = 1
    DARK_BLUE = 2


@dataclass
class Point:
    x: float
    y: float = 0.5


@dataclass
class Shape:
    name: str
    origin: Point
    corners: List[Point]
    color: Color = Color.RED
    parent: Optional[Point] = None
    weights: Dict[str, float] = field(default_factory=dict)


def make_shape(name: str, origin: Optional[Point] = None, color: Color = Color.DARK_BLUE, sides: int = 3) -> Shape:
    """Builds a shape."""
    origin = origin or Point(0.0)
    corners = [Point(origin.x + i, origin.y) for i in range(sides)]
    return Shape(name, origin, corners, color, None, {"w": 1.5})


def describe(s: Shape) -> str:
    return f"{type(s).__name__}:{type(s.origin).__name__}:{s.color!r}:{len(s.corners)}:{s.weights}"


def maybe_half(x: Optional[int] = None) -> Optional[float]:
    return None if x is None else x / 2


def shift(days: List[datetime.datetime], by: datetime.timedelta) -> List[datetime.datetime]:
    return [d + by for d in days]


def total(a: npt.NDArray[np.float64]) -> float:
    return float(a.sum())
'''

E2E_APP = '''
using System;
using System.Collections.Generic;
using LessPy;
using Generated;

static class App
{
    static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<IShapes>(args[0]);
        Shape s = api.MakeShape("tri");
        Console.WriteLine("shape " + s.Name + " " + s.Color + " " + s.Corners.Count + " " + s.Origin.Y + " " + s.Weights["w"] + " " + (s.Parent == null));
        Shape q = api.MakeShape("sq", new Point { X = 2 }, Color.Red, 4);
        Console.WriteLine("square " + q.Corners[3].X + " " + q.Color);
        Console.WriteLine("describe " + api.Describe(q));
        Console.WriteLine("half " + api.MaybeHalf(5) + " " + (api.MaybeHalf() == null));
        var when = new DateTime(2024, 1, 31, 0, 0, 0, DateTimeKind.Utc);
        Console.WriteLine("shift " + api.Shift(new List<DateTime> { when }, TimeSpan.FromDays(1))[0].ToString("o"));
        Console.WriteLine("total " + api.Total(NdArray.FromArray(new[] { 1.5, 2.5 })));
        ((IDisposable)api).Dispose();
        return 0;
    }
}
'''


def test_generated_stub_talks_to_a_real_server(tmp_path, csharp_bin):
    """The generated classes, enums, nullables and defaults work end to end: mcs, Mono, a headless server."""
    from conftest import compile_csharp, run_mono
    from servers import Headless

    module = tmp_path / "shapes_module.py"
    module.write_text(E2E_MODULE)
    stub = stub_for_module(str(module), "IShapes", namespace="Generated")
    (tmp_path / "IShapes.cs").write_text(stub)
    (tmp_path / "App.cs").write_text(E2E_APP)
    exe = compile_csharp(csharp_bin, [tmp_path / "IShapes.cs", tmp_path / "App.cs"], "StubApp.exe")
    with Headless(tmp_path / "work", module, "--keep-alive") as server:
        run = run_mono(exe, server.folder)
    assert run.returncode == 0, stub + run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "shape tri DarkBlue 3 0.5 1.5 True" in lines, run.stdout
    assert "square 5 Red" in lines
    assert "describe Shape:Point:<Color.RED: 1>:4:{'w': 1.5}" in lines, run.stdout
    assert "half 2.5 True" in lines
    assert "shift 2024-02-01T00:00:00.0000000Z" in lines
    assert "total 4" in lines
