"""Where a called name is looked up, at call time: a module (headless) or the notebook's user namespace.

Looking up on every call is what makes a notebook live: redefine `f` in a cell and the next C# call runs
the new `f`.

One rule for both hosts: C# may call the public functions the module (or the notebook's cells) defines itself,
plus whatever the user exports explicitly (`lesspy_kernel.export(fn)`, or `%lesspy serve --export name`).
Imported names (`from os import remove`), builtins (`open`), IPython's own objects (`exit`, `get_ipython`),
modules, classes and names starting with `_` are refused with a message that says how to export them.
A class is not a function: calling one by name is refused (a record type travels as a value instead).
"""

from __future__ import annotations

import builtins
import difflib
import importlib.util
import os
import re
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Collection, Dict, Iterable, List, MutableMapping, Optional, Tuple, TypeVar

F = TypeVar("F")


class FunctionNotFound(LookupError):
    """The name is not something the caller may call; the message says why and what to do."""


# ---------------------------------------------------------------- explicit exports

_exported: Dict[int, Any] = {}     # id -> the object itself (builtins cannot be weakly referenced)
_exported_lock = threading.Lock()


def export(fn: F) -> F:
    """Let C# call `fn` although the notebook (or module) did not define it, e.g. an imported function.

    Usable as a decorator (``@lesspy_kernel.export``) or as a call (``lesspy_kernel.export(np.hypot)``); returns
    `fn` unchanged. C# calls it by the name it has in the notebook (or module). A class cannot be exported: write
    a function that builds the object instead.
    """
    if isinstance(fn, type):
        raise TypeError(f"lesspy_kernel.export: {fn.__name__} is a class, not a function; C# calls functions: "
                        f"export a function that returns a {fn.__name__} instead")
    if isinstance(fn, ModuleType):
        raise TypeError(f"lesspy_kernel.export: {fn.__name__} is a module, not a function: export its functions")
    if not callable(fn):
        raise TypeError(f"lesspy_kernel.export: a {type(fn).__name__} is not callable, so C# cannot call it")
    with _exported_lock:
        _exported[id(fn)] = fn
    return fn


def unexport(fn: Any) -> None:
    """Undo `export(fn)` (a function the notebook defines itself stays callable)."""
    with _exported_lock:
        if _exported.get(id(fn)) is fn:
            del _exported[id(fn)]


def is_exported(fn: Any) -> bool:
    """True when `export(fn)` was called for this very object."""
    with _exported_lock:
        return _exported.get(id(fn)) is fn


# ---------------------------------------------------------------- namespaces

class Namespace:
    """Base: maps a function name to a callable, applying the export rules and the `only` allow-list.

    `only`: if given, nothing else may be called. `export`: names the host exports explicitly although they are
    not defined in it (imported functions, callable objects of library classes).
    """

    where = "the namespace"
    home = "__main__"                 # functions whose __module__ is this are defined here

    def __init__(self, only: Optional[Collection[str]] = None, export: Optional[Collection[str]] = None) -> None:
        self.only = frozenset(only) if only else None
        self.exports = frozenset(export) if export else frozenset()
        self._approved: Dict[str, Any] = {}     # name -> the function last allowed under it (defined here)

    def _get(self, name: str) -> Any:
        """The raw value bound to `name` (KeyError when there is none)."""
        raise NotImplementedError

    def _items(self) -> Iterable[Tuple[str, Any]]:
        raise NotImplementedError

    def how_to_export(self, name: str) -> str:
        return f"export it with lesspy_kernel.export({name})"

    def refusal(self, name: str, value: Any) -> Optional[str]:
        """Why C# may not call `value` by `name`, or None when it may. The same rules for every host."""
        if self.only is not None and name not in self.only:
            return (f"'{name}' is not exported by this server (exported: {', '.join(sorted(self.only))}); "
                    "serve with it in --only to allow it")
        if name.startswith("_"):
            return f"'{name}' is private (starts with '_'), so it cannot be called"
        if isinstance(value, ModuleType):
            return f"'{name}' in {self.where} is a module, not a function"
        if isinstance(value, type):
            return (f"'{name}' in {self.where} is a class, not a function: C# calls functions. Define a function "
                    f"that returns a {value.__name__} (a record type can be passed and returned as a value)")
        if not callable(value):
            return f"'{name}' in {self.where} is a {type(value).__name__}, not a function"
        if self._defined_here(value) or name in self.exports or is_exported(value):
            return None
        origin = _origin(value)
        return (f"'{name}' in {self.where} is {origin}, not defined there: only the functions it defines itself "
                f"are exported to C#. To let C# call it, {self.how_to_export(name)}")

    def _defined_here(self, value: Any) -> bool:
        return getattr(value, "__module__", None) == self.home

    def lookup(self, name: str) -> Callable[..., Any]:
        approved = self._approved.get(name)
        if approved is not None:                 # the same object as last time: the same verdict, at once
            try:
                if self._get(name) is approved:
                    return approved
            except KeyError:
                pass
        if (self.only is not None and name not in self.only) or name.startswith("_"):
            raise FunctionNotFound(self.refusal(name, None))
        try:
            value = self._get(name)
        except KeyError:
            raise FunctionNotFound(self._missing(name)) from None
        why = self.refusal(name, value)
        if why is not None:
            raise FunctionNotFound(why)
        if self._defined_here(value) and len(self._approved) < 4096:  # (an export can be undone: not kept)
            self._approved[name] = value
        return value

    def _missing(self, name: str) -> str:
        if hasattr(builtins, name):
            return (f"'{name}' is a Python builtin, not defined in {self.where}: only the functions it defines "
                    f"itself are exported to C#. Define a function that calls it, or bind it and "
                    f"{self.how_to_export(name)}")
        near = self._near(name)
        hint = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
        return f"'{name}' is not defined in {self.where}: define it (or check the [PythonImport] name){hint}"

    def _near(self, name: str) -> List[str]:
        """Up to three exported names a caller of `name` may have meant: the same but for case, its snake_case
        form (a C# method name), or a close spelling."""
        try:
            names = self.names()
        except Exception:           # a namespace that cannot be listed now: no suggestion
            return []
        snake = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
        near = [n for n in names if n.lower() in (name.lower(), snake)]
        near += [n for n in difflib.get_close_matches(name, names, n=3, cutoff=0.7) if n not in near]
        return near[:3]

    def names(self) -> list:
        """The names C# may call now, for status displays and stub generation."""
        return sorted(n for n, v in list(self._items()) if self.refusal(n, v) is None)


def _origin(value: Any) -> str:
    """Where an imported callable comes from, for the refusal message."""
    module = getattr(value, "__module__", None)
    if module in ("builtins", None) and getattr(value, "__self__", None) is builtins:
        return "a Python builtin"
    if isinstance(module, str) and module:
        return f"imported from {module}"
    return f"a {type(value).__name__} defined elsewhere"


class ModuleNamespace(Namespace):
    """The public functions of a Python module file (the headless server)."""

    def __init__(self, module: ModuleType, only: Optional[Collection[str]] = None,
                 export: Optional[Collection[str]] = None) -> None:
        super().__init__(only, export)
        self.module = module
        self.home = module.__name__
        self.path = str(getattr(module, "__file__", "") or "")
        self.where = f"module {module.__name__} ({self.path or '?'})"

    def how_to_export(self, name: str) -> str:
        return (f"add `lesspy_kernel.export({name})` to the module, or wrap it there: "
                f"def {name}(*args): return ...")

    def _get(self, name: str) -> Any:
        try:
            return vars(self.module)[name]
        except KeyError:
            raise KeyError(name) from None

    def _items(self) -> Iterable[Tuple[str, Any]]:
        return vars(self.module).items()


class DictNamespace(Namespace):
    """A live dict of names: the notebook's `user_ns` (functions defined in its cells have __module__ '__main__')."""

    def __init__(self, ns: MutableMapping[str, Any], only: Optional[Collection[str]] = None,
                 where: str = "the notebook", export: Optional[Collection[str]] = None,
                 home: Optional[str] = None) -> None:
        super().__init__(only, export)
        self.ns = ns
        self.where = where
        self.home = home if home is not None else str(ns.get("__name__", "__main__"))

    def how_to_export(self, name: str) -> str:
        return (f"run `lesspy_kernel.export({name})` in a cell (or decorate a function with "
                f"@lesspy_kernel.export), or serve with `%lesspy serve --export {name}`")

    def _get(self, name: str) -> Any:
        return self.ns[name]

    def _items(self) -> Iterable[Tuple[str, Any]]:
        return list(self.ns.items())


def module_file(path: str) -> Path:
    """The absolute path of a module file (normalised like the C# client's Path.GetFullPath); FileNotFoundError
    saying what is there instead when it is not a file."""
    file = Path(os.path.abspath(path))
    if file.is_dir():
        raise FileNotFoundError(f"{file} is a folder, not a Python module: give the path of a .py file")
    if not file.is_file():
        raise FileNotFoundError(f"no Python module at {file}")
    return file


def load_module(path: str) -> ModuleType:
    """Import a module from its file path, with its folder on sys.path so its own imports work."""
    file = module_file(path)
    folder = str(file.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[file.stem] = module
    spec.loader.exec_module(module)
    return module
