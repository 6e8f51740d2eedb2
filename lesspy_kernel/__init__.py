"""lesspy: let a running C# application call live notebook (or module) functions through shared memory.

In a notebook::

    %load_ext lesspy_kernel
    %lesspy serve --name demo

C# may call the functions the notebook's cells define; anything else only once exported explicitly:
``lesspy_kernel.export(fn)`` (also a decorator) or ``%lesspy serve --export name1,name2``.

Headless (what the C# ``LessPythonInvoke.Initialize<T>`` starts; by hand it serves until stopped)::

    lesspy serve --module exporting_module.py --work-folder lesspy_work

``lesspy --help`` lists the other commands (stub, status, stop, csharp).
"""

from __future__ import annotations

from typing import Any, Optional

from .namespaces import export, unexport

# The one version of the Python package and the C# library: pyproject.toml, csharp/build.sh and
# LessPy.csproj all read this line.
__version__ = "0.3.0"

__all__ = ["__version__", "calls", "export", "unexport", "result_array", "load_ipython_extension",
           "unload_ipython_extension"]


def calls(n: Optional[int] = None) -> Any:
    """The calls the C# app made to this notebook (a list of CallRecord, newest last).

    `lesspy_kernel.calls()[-1].args[0]` is the array the app sent, copied out of the mapping.
    """
    from .jupyter.history import calls as _calls

    return _calls(n)


def result_array(shape: Any, dtype: Any = "float64") -> Any:
    """A NumPy array to fill and return from a function C# calls: it is placed in the response mapping, so
    returning it as an NdArray costs no copy (docs/PERFORMANCE.md). Outside a call it is a plain new array."""
    from .callloop import result_array as _result_array

    return _result_array(shape, dtype)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext lesspy_kernel`: register the %lesspy magics."""
    from .magics import load_ipython_extension as load

    load(ipython)


def _jupyter_server_extension_points() -> list:
    """Jupyter Server's entry point: the extension that relays websockets to this host's named sessions
    (enabled by the jupyter_server_config.d file the wheel installs)."""
    return [{"module": "lesspy_kernel.jupyter.server_extension"}]


def unload_ipython_extension(ipython: Any) -> None:
    """`%unload_ext lesspy_kernel`: stop a running server and remove the magics."""
    from .magics import unload_ipython_extension as unload

    unload(ipython)
