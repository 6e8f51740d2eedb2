"""The layers hold: the core imports nothing of Jupyter, lesspy_kernel has no import cycle, and a headless server
runs without loading IPython.

The core is lesspy_kernel's modules outside jupyter/ (wire/ and transport/ included). The Jupyter layer
(lesspy_kernel/jupyter/) and the magics (magics/, installed as lesspy_kernel.magics) sit on top: they may import the
core, never the other way round (they plug in through lesspy_kernel.executors and lesspy_kernel.hooks).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

from servers import ROOT, TYPES_MODULE

PACKAGE = ROOT / "lesspy_kernel"
MAGICS = ROOT / "magics"

# What the core must never import (a module or any of its submodules).
FORBIDDEN = ("lesspy_kernel.jupyter", "lesspy_kernel.magics", "IPython", "ipykernel", "traitlets", "tornado",
             "jupyter_client", "jupyter_core", "jupyter_server")
# What a headless server must not load.
NOT_LOADED = ("IPython", "ipykernel", "traitlets", "tornado", "lesspy_kernel.jupyter", "lesspy_kernel.magics")

# Import cycles known and not broken yet, each the set of modules of one cycle. An entry that no longer is a
# cycle fails the test too: take it out.
KNOWN_CYCLES: List[Set[str]] = []


def _module_name(path: Path) -> str:
    """The dotted name `path` is imported under (magics/ is installed as lesspy_kernel.magics)."""
    if path.is_relative_to(MAGICS):
        parts = ["lesspy_kernel", "magics", *path.relative_to(MAGICS).with_suffix("").parts]
    else:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _all_modules() -> Dict[str, Path]:
    found = {_module_name(p): p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts}
    found.update({_module_name(p): p for p in MAGICS.rglob("*.py") if "__pycache__" not in p.parts})
    return found


def _is_core(name: str) -> bool:
    return not (name == "lesspy_kernel" or _under(name, "lesspy_kernel.jupyter") or _under(name, "lesspy_kernel.magics"))


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _imports(path: Path, module: str, module_level_only: bool) -> Iterator[Tuple[int, str]]:
    """(line, absolute module name) of each import in `path`; for `from X import a`, both X and X.a (a may be a
    submodule). Relative imports are resolved against `module`'s package; `importlib.import_module("x")` and
    `__import__("x")` with a literal name count too."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = _module_level(tree.body) if module_level_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            yield node.lineno, source
            for alias in node.names:
                yield node.lineno, f"{source}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) and \
                isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                yield node.lineno, node.args[0].value


def _module_level(body: List[ast.stmt]) -> Iterator[ast.AST]:
    """The statements run when the module is imported (typing-only imports included: they still tie the modules
    together), not those inside functions."""
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        yield node
        for field in ("body", "orelse", "finalbody"):
            inner = getattr(node, field, None)
            if isinstance(inner, list):
                yield from _module_level(inner)
        for handler in getattr(node, "handlers", None) or ():
            yield from _module_level(handler.body)


def _forbidden(name: str) -> Optional[str]:
    return next((f for f in FORBIDDEN if _under(name, f)), None)


def test_the_core_imports_nothing_of_jupyter():
    """No module of the core names the Jupyter layer, the magics, IPython, ipykernel, traitlets, tornado or
    jupyter_*, at module level or inside a function. lesspy_kernel/__init__.py is the extension's entry point
    (`%load_ext lesspy_kernel` calls its load_ipython_extension): only its functions may reach the layer above."""
    modules = _all_modules()
    core = sorted(name for name in modules if _is_core(name))
    assert "lesspy_kernel.server" in core and "lesspy_kernel.executors" in core, core
    violations = []
    for name in core:
        for line, imported in _imports(modules[name], name, module_level_only=False):
            if _forbidden(imported):
                violations.append(f"{modules[name].relative_to(ROOT)}:{line} imports {imported}")
    for line, imported in _imports(modules["lesspy_kernel"], "lesspy_kernel", module_level_only=True):
        if _forbidden(imported):
            violations.append(f"lesspy_kernel/__init__.py:{line} imports {imported} when the package is imported")
    assert not violations, "the core imports the layer above it:\n" + "\n".join(violations)


def _graph() -> Dict[str, Set[str]]:
    modules = _all_modules()
    graph: Dict[str, Set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for _, imported in _imports(path, name, module_level_only=True):
            if imported in modules and imported != name:
                graph[name].add(imported)
    return graph


def _cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected component."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[Set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_path_through(component, graph) for component in components]


def _path_through(component: Set[str], graph: Dict[str, Set[str]]) -> List[str]:
    """A closed path inside one strongly connected component, to name the cycle."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        following = sorted(graph[path[-1]] & component)
        back = [w for w in following if w in seen]
        if back:
            return path[path.index(back[0]):] + [back[0]]
        path.append(following[0])
        seen.add(following[0])


def test_no_import_cycles():
    """The modules of lesspy_kernel (subpackages and the magics included) import each other without a cycle."""
    cycles = _cycles(_graph())
    unknown = [c for c in cycles if set(c) not in KNOWN_CYCLES]
    assert not unknown, "import cycles:\n" + "\n".join(" -> ".join(c) for c in unknown)
    stale = [k for k in KNOWN_CYCLES if not any(set(c) == k for c in cycles)]
    assert not stale, f"no longer a cycle, take it out of KNOWN_CYCLES: {stale}"


SERVE_AND_LIST = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    import lesspy_kernel.server, lesspy_kernel.cli
    from lesspy_kernel import cli, client
    from lesspy_kernel.wire import Tag

    folder, module = sys.argv[1], sys.argv[2]

    def drive():
        deadline = time.monotonic() + 20
        while not all(os.path.exists(os.path.join(folder, f)) for f in ("notify.port", "python.pid")) and \
                time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            with client.ClientLane(folder) as lane:
                answer = lane.call("add_ints", Tag.INT32, [2, 3], [Tag.INT32, Tag.INT32])
            loaded = sorted(m for m in sys.modules if any(m == n or m.startswith(n + ".") for n in NOT_LOADED))
            print(json.dumps({"answer": answer, "loaded": loaded}), flush=True)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)      # how `lesspy serve` is stopped by hand

    threading.Thread(target=drive, daemon=True).start()
    sys.exit(cli.main(["serve", "--module", module, "--work-folder", folder]))
""")


def test_a_headless_server_loads_no_ipython(tmp_path: Path):
    """A fresh process that imports the server and the CLI, serves a module headless and answers a call has not
    loaded IPython, ipykernel, traitlets, tornado, the Jupyter layer or the magics."""
    script = f"NOT_LOADED = {NOT_LOADED!r}\n" + SERVE_AND_LIST
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "work"), str(TYPES_MODULE)],
                          capture_output=True, text=True, timeout=60, cwd=str(tmp_path))
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no answer (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    report = json.loads(lines[-1])
    assert report["answer"] == 5
    assert report["loaded"] == [], f"a headless server loaded {', '.join(report['loaded'][:10])}"
