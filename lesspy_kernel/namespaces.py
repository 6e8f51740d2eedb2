"""Where a called name is looked up, at call time: a module (headless) or the notebook's user namespace.

Looking up on every call is what makes a notebook live: redefine `f` in a cell and the next C# call runs
the new `f`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Collection, MutableMapping, Optional


class FunctionNotFound(LookupError):
    """The name is not something the caller may call; the message says why and what to do."""


class Namespace:
    """Base: maps a function name to a callable, applying the `only` allow-list."""

    where = "the namespace"

    def __init__(self, only: Optional[Collection[str]] = None) -> None:
        self.only = frozenset(only) if only else None

    def _get(self, name: str) -> Any:
        raise NotImplementedError

    def names(self) -> list:
        """The callable public names, for status displays and stub generation."""
        raise NotImplementedError

    def lookup(self, name: str) -> Callable[..., Any]:
        if self.only is not None and name not in self.only:
            raise FunctionNotFound(f"'{name}' is not exported by this server (exported: "
                                   f"{', '.join(sorted(self.only))})")
        if name.startswith("_"):
            raise FunctionNotFound(f"'{name}' is private (starts with '_'), so it cannot be called")
        try:
            fn = self._get(name)
        except KeyError:
            raise FunctionNotFound(f"'{name}' is not defined in {self.where}: define it (or check the "
                                   "[PythonImport] name)") from None
        if not callable(fn):
            raise FunctionNotFound(f"'{name}' in {self.where} is a {type(fn).__name__}, not a function")
        return fn


class ModuleNamespace(Namespace):
    """The public functions of a Python module file (the headless server)."""

    def __init__(self, module: ModuleType, only: Optional[Collection[str]] = None) -> None:
        super().__init__(only)
        self.module = module
        self.path = str(getattr(module, "__file__", "") or "")
        self.where = f"module {module.__name__} ({self.path or '?'})"

    def _get(self, name: str) -> Any:
        try:
            value = getattr(self.module, name)
        except AttributeError:
            raise KeyError(name) from None
        if callable(value) and not self._defined_here(value):
            raise FunctionNotFound(f"'{name}' in {self.where} is imported from {getattr(value, '__module__', '?')}, "
                                   "not defined there: only the module's own functions are exported "
                                   f"(wrap it: def {name}(*a): return ...)")
        return value

    def _defined_here(self, value: Any) -> bool:
        return getattr(value, "__module__", None) == self.module.__name__

    def names(self) -> list:
        return sorted(n for n, v in vars(self.module).items()
                      if not n.startswith("_") and callable(v) and self._defined_here(v)
                      and (self.only is None or n in self.only))


class DictNamespace(Namespace):
    """A live dict of names: the notebook's `user_ns`."""

    def __init__(self, ns: MutableMapping[str, Any], only: Optional[Collection[str]] = None,
                 where: str = "the notebook") -> None:
        super().__init__(only)
        self.ns = ns
        self.where = where

    def _get(self, name: str) -> Any:
        return self.ns[name]

    def names(self) -> list:
        return sorted(n for n, v in list(self.ns.items())
                      if not n.startswith("_") and callable(v) and not isinstance(v, type)
                      and getattr(v, "__module__", None) in ("__main__", None)
                      and (self.only is None or n in self.only))


def load_module(path: str) -> ModuleType:
    """Import a module from its file path, with its folder on sys.path so its own imports work."""
    file = Path(os.path.abspath(path))      # normalised like the C# client's Path.GetFullPath
    if not file.is_file():
        raise FileNotFoundError(f"no Python module at {file}")
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
