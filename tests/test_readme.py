"""The README's quick starts, run as written: the notebook cells in a real kernel, the C# program compiled with
mcs against LessPy.dll and run with Mono against that kernel, then against the same functions served headless."""

from __future__ import annotations

import ast
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from conftest import ROOT, compile_csharp, run_mono
from kernels import kernel

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def section(title: str) -> str:
    """The README text under a `## title` heading, up to the next `## ` heading."""
    text = README.read_text(encoding="utf-8")
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def blocks(title: str, lang: str) -> List[str]:
    return [body for fence_lang, body in FENCE.findall(section(title)) if fence_lang == lang]


def notebook_cells() -> List[str]:
    cells = blocks("Quick start: the notebook", "python")
    assert len(cells) == 2, "the notebook quick start is two cells: serve, then define functions"
    return cells


def defined_functions(cell: str) -> Dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.parse(cell).body if isinstance(n, ast.FunctionDef)}


def csharp_program() -> str:
    programs = blocks("Quick start: C#", "csharp")
    assert len(programs) == 1, "the C# quick start is one complete program"
    return programs[0]


def imported_names(program: str) -> List[Tuple[str, str]]:
    """(C# method, Python function) for each [PythonImport] method of the program's interface."""
    found = []
    for explicit, declaration in re.findall(r'\[PythonImport(?:\("(\w+)"\))?\]([^;]*);', program):
        method = re.search(r"(\w+)\s*\(", declaration).group(1)    # a tuple return type is "(T1, T2) name("
        found.append((method, explicit or method))
    return found


def test_the_csharp_quick_start_is_a_whole_program_calling_only_what_the_notebook_defines():
    program = csharp_program()
    assert re.search(r"^using System;$", program, re.M)
    assert re.search(r"^using LessPy;$", program, re.M)
    assert len(re.findall(r"\bstatic (?:int|void) Main\(", program)) == 1
    assert len(re.findall(r"\bvar api\b|\bIMyApi api\b", program)) == 1, "api is declared once"
    names = imported_names(program)
    assert len(names) == program.count("[PythonImport"), names
    defined = defined_functions(notebook_cells()[1])
    missing = [py for _, py in names if py not in defined]
    assert not missing, f"the C# quick start calls {missing}, which the notebook quick start never defines"
    assert '"myapi"' in program and "--name myapi" in notebook_cells()[0]


def test_the_cli_stub_for_the_quick_start_functions_compiles(csharp_bin, tmp_path):
    module = tmp_path / "quickstart.py"
    module.write_text(notebook_cells()[1], encoding="utf-8")
    from lesspy_kernel.cli import module_stub

    stub = tmp_path / "IMyApi.cs"
    stub.write_text(module_stub(str(module), "IMyApi"), encoding="utf-8")
    for name in defined_functions(notebook_cells()[1]):
        assert re.search(rf"\b{name}\b", stub.read_text()), f"{name} is missing from the stub"
    compile_csharp(csharp_bin, [stub], "QuickStartStub.dll", extra=["-target:library"])


def expected_output(out: str) -> None:
    assert "add_ints(2, 40) = 42" in out, out
    assert "first value 2" in out, out
    assert "stats(...) = (mean 5, max 8) of [2, 4, 6, 8]" in out, out


@pytest.fixture(scope="module")
def app(csharp_bin, tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("readme") / "App.cs"
    src.write_text(csharp_program(), encoding="utf-8")
    return compile_csharp(csharp_bin, [src], "ReadmeApp.exe")


@pytest.fixture
def short_tmp():
    """A short temporary folder: the session's socket path must stay well under the 108 bytes of sun_path
    (Mono refuses a 107-byte one that Python accepts)."""
    path = Path(tempfile.mkdtemp(prefix="lpr"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_csharp_quick_start_calls_the_notebook_quick_start(app, short_tmp):
    with kernel(short_tmp) as k:
        served = k.run(notebook_cells()[0])
        assert 'LessPythonInvoke.Connect<IMyApi>("myapi")' in served, served
        k.run(notebook_cells()[1])
        run = run_mono(app, env={"JUPYTER_RUNTIME_DIR": str(k.runtime_dir)}, timeout=120)
        assert run.returncode == 0, run.stdout + run.stderr
        expected_output(run.stdout)
        calls = k.run("print([c.function for c in __import__('lesspy_kernel').calls()])")
        assert "add_ints" in calls and "scale" in calls and "stats" in calls, calls


def test_the_csharp_quick_start_runs_headless_on_the_same_functions(app, tmp_path):
    module = tmp_path / "quickstart.py"
    module.write_text(notebook_cells()[1], encoding="utf-8")
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    run = run_mono(app, module, env=env, cwd=str(tmp_path), timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    expected_output(run.stdout)
