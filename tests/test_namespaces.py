"""One export rule for both hosts: the headless module namespace and the notebook's user namespace agree.

The same source is loaded as a module file (headless) and executed as notebook cells are (in a dict whose
`__name__` is `__main__`); both must export exactly the same names and refuse the rest with the same reasons.
"""

from __future__ import annotations

import textwrap

import pytest

import lesspy_kernel
from lesspy_kernel.namespaces import DictNamespace, FunctionNotFound, ModuleNamespace, load_module

SOURCE = textwrap.dedent('''
    import os
    import dataclasses
    from os import remove
    from os.path import join
    import lesspy_kernel

    def scale(x):
        return x * 2

    double = lambda x: x * 2

    @dataclasses.dataclass
    class Point:
        x: float
        y: float

    class Counter:
        def __call__(self):
            return 1

    counter = Counter()

    def make_point(x: float, y: float) -> Point:
        return Point(x, y)

    def _private():
        return 0

    limit = 3
    hypot = lesspy_kernel.export(__import__("math").hypot)

    @lesspy_kernel.export
    def decorated():
        return 4
''')

EXPORTED = ["counter", "decorated", "double", "hypot", "make_point", "scale"]
REFUSED = {
    "Point": "is a class, not a function",
    "Counter": "is a class, not a function",
    "os": "is a module, not a function",
    "dataclasses": "is a module, not a function",
    "lesspy_kernel": "is a module, not a function",
    "remove": "imported from",
    "join": "imported from",
    "_private": "private",
    "limit": "int, not a function",
    "nothing_here": "is not defined in",
    "open": "builtin",
}


@pytest.fixture
def both(tmp_path):
    path = tmp_path / "exporting_same.py"
    path.write_text(SOURCE)
    module = ModuleNamespace(load_module(str(path)))
    cells: dict = {"__name__": "__main__"}
    exec(compile(SOURCE, "<cell>", "exec"), cells)
    notebook = DictNamespace(cells)
    yield module, notebook
    lesspy_kernel.unexport(cells["hypot"])


def test_both_hosts_export_the_same_names(both):
    module, notebook = both
    assert module.names() == notebook.names() == EXPORTED


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_both_hosts_refuse_the_same_names_for_the_same_reason(both, name):
    for ns in both:
        with pytest.raises(FunctionNotFound) as e:
            ns.lookup(name)
        assert REFUSED[name] in str(e.value), (type(ns).__name__, str(e.value))


def test_refusals_say_how_to_export(both):
    module, notebook = both
    with pytest.raises(FunctionNotFound) as e:
        notebook.lookup("remove")
    msg = str(e.value)
    assert "lesspy_kernel.export(remove)" in msg and "%lesspy serve --export remove" in msg
    with pytest.raises(FunctionNotFound) as e:
        module.lookup("remove")
    assert "lesspy_kernel.export(remove)" in str(e.value) and "%lesspy" not in str(e.value)
    with pytest.raises(FunctionNotFound) as e:
        notebook.lookup("Point")
    assert "Define a function that returns a Point" in str(e.value)


def test_explicit_exports_by_name_and_by_object(both):
    module, notebook = both
    ns = DictNamespace(notebook.ns, export=["join"])
    assert ns.lookup("join") is notebook.ns["join"]
    assert "join" in ns.names() and "remove" not in ns.names()
    lesspy_kernel.export(notebook.ns["remove"])
    try:
        assert notebook.lookup("remove") is notebook.ns["remove"]
        assert module.lookup("remove") is notebook.ns["remove"]          # the same object, exported once
    finally:
        lesspy_kernel.unexport(notebook.ns["remove"])
    with pytest.raises(FunctionNotFound):
        notebook.lookup("remove")
    with pytest.raises(FunctionNotFound):                                 # --export does not reach classes
        DictNamespace(notebook.ns, export=["Point"]).lookup("Point")


def test_export_refuses_what_cannot_be_called():
    import os

    @lesspy_kernel.export
    def f():
        return 1

    assert f() == 1                                                        # a decorator returns the function
    lesspy_kernel.unexport(f)
    with pytest.raises(TypeError, match="is a class"):
        lesspy_kernel.export(FunctionNotFound)
    with pytest.raises(TypeError, match="is a module"):
        lesspy_kernel.export(os)
    with pytest.raises(TypeError, match="not callable"):
        lesspy_kernel.export(3)


def test_only_restricts_both(both):
    module, notebook = both
    for ns in (ModuleNamespace(module.module, only=["scale", "remove"]), DictNamespace(notebook.ns, only=["scale"])):
        assert ns.names() == ["scale"]
        with pytest.raises(FunctionNotFound, match="not exported by this server"):
            ns.lookup("double")
    with pytest.raises(FunctionNotFound, match="imported from"):           # --only does not export an import
        ModuleNamespace(module.module, only=["remove"]).lookup("remove")


def test_a_name_rebound_after_a_call_is_judged_again():
    """lookup remembers the function it last allowed under a name; rebinding the name (a re-run cell, an
    import over it) must not inherit that verdict."""
    import os

    ns: dict = {"__name__": "__main__"}
    exec("def f():\n    return 1\n", ns)
    space = DictNamespace(ns)
    first = space.lookup("f")
    assert space.lookup("f") is first
    exec("def f():\n    return 2\n", ns)             # the cell re-run: the new function is called
    assert space.lookup("f")() == 2
    ns["f"] = os.remove                              # imported over it: refused
    with pytest.raises(FunctionNotFound, match="not defined there"):
        space.lookup("f")
    exec("class f:\n    pass\n", ns)                 # a class: refused
    with pytest.raises(FunctionNotFound, match="is a class"):
        space.lookup("f")
    del ns["f"]
    with pytest.raises(FunctionNotFound):
        space.lookup("f")
    exec("def f():\n    return 3\n", ns)
    assert space.lookup("f")() == 3


@pytest.mark.parametrize("name, meant", [("MakePoint", "make_point"), ("Scale", "scale"), ("dubble", "double"),
                                         ("make_pont", "make_point")])
def test_a_name_not_defined_suggests_what_may_have_been_meant(both, name, meant):
    """A C# method name (CamelCase), another case or a near spelling: the message names the exported function."""
    for ns in both:
        with pytest.raises(FunctionNotFound) as e:
            ns.lookup(name)
        assert f"did you mean '{meant}'" in str(e.value), str(e.value)


def test_a_name_far_from_every_export_gets_no_suggestion(both):
    for ns in both:
        with pytest.raises(FunctionNotFound) as e:
            ns.lookup("zzz_nothing")
        assert "did you mean" not in str(e.value)
