"""Both notebooks executed headless with nbclient, with the real C# app calling in between cells."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import compile_csharp, run_mono

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo_app(csharp_bin):
    return compile_csharp(csharp_bin, [ROOT / "csharp" / "NotebookDemo" / "Program.cs"], "NotebookDemo.exe")


def execute(path: Path, tmp_path: Path, monkeypatch, before: dict, after: dict) -> nbformat.NotebookNode:
    """Run every cell in a fresh kernel; call before[tag]/after[tag] around the cells carrying that tag."""
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        assert not cell.get("outputs"), f"{path.name} is committed with outputs: clear them"
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with client.setup_kernel():
        for i, cell in enumerate(nb.cells):
            tags = cell.metadata.get("tags", [])
            for tag in tags:
                if tag in before:
                    before[tag]()
            client.execute_cell(cell, i)
            for tag in tags:
                if tag in after:
                    after[tag]()
    return nb


def text_of(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for v in out.get("data", {}).values())
    return "".join(parts)


def app_runner(demo_app, session: str, runs: list):
    """A callback that runs the C# demo app against `session` and keeps what it printed."""

    def app():
        p = run_mono(demo_app, session, session, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        runs.append(p.stdout)

    return app


def test_quickstart(tmp_path, monkeypatch, demo_app):
    runs = []
    app = app_runner(demo_app, "quickstart", runs)
    nb = execute(ROOT / "notebooks" / "quickstart.ipynb", tmp_path, monkeypatch,
                 before={"after-csharp-calls": app}, after={"redefine": app})
    assert "add_ints(2, 40) = 42" in runs[0] and "scale([1, 2, 3, 4], 2.0) = [2, 4, 6, 8]" in runs[0]
    assert "scale([1, 2, 3, 4], 2.0) = [3, 5, 7, 9]" in runs[1], "the redefined function must answer the next call"
    out = "".join(text_of(c) for c in nb.cells)
    assert 'LessPythonInvoke.Connect<IMyApi>("quickstart")' in out
    assert '[PythonImport("add_ints")]' in out and "long AddInts(long a, long b);" in out
    calls_cell = next(c for c in nb.cells if "after-csharp-calls" in c.metadata.get("tags", []))
    assert "scale" in text_of(calls_cell) and "float32" in text_of(calls_cell)


def test_ndarray_inspection(tmp_path, monkeypatch, demo_app):
    runs = []
    app = app_runner(demo_app, "inspection", runs)
    nb = execute(ROOT / "notebooks" / "ndarray_inspection.ipynb", tmp_path, monkeypatch,
                 before={"after-csharp-calls": app}, after={})
    assert "brighten: NdArray(float32, [64, 64])" in runs[0] and "max 1" in runs[0]
    calls_html = text_of(next(c for c in nb.cells if "after-csharp-calls" in c.metadata.get("tags", [])))
    assert "data:image/png;base64" in calls_html, "2-D arrays get a thumbnail"
    assert "<svg" in calls_html, "1-D arrays get a sparkline"
    assert any("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])), "the matplotlib figure"
    assert "float32 (64, 64)" in "".join(text_of(c) for c in nb.cells)


@pytest.mark.parametrize("name, command", [
    ("quickstart.ipynb", "mono csharp/bin/NotebookDemo.exe quickstart quickstart"),
    ("ndarray_inspection.ipynb", "mono csharp/bin/NotebookDemo.exe inspection inspection"),
])
def test_run_all_without_the_app_and_the_top_says_which_app(tmp_path, monkeypatch, name, command):
    """Run All before any C# call: no cell fails (nbclient raises on an error), the calls cells say why they are
    empty; and the first cell names the C# app and the command that runs it."""
    path = ROOT / "notebooks" / name
    top = nbformat.read(path, as_version=4).cells[0]
    assert top.cell_type == "markdown" and command in top.source and "bash csharp/build.sh" in top.source
    nb = execute(path, tmp_path, monkeypatch, before={}, after={})
    out = "".join(text_of(c) for c in nb.cells)
    assert "No C# call yet" in out or "No call to brighten yet" in out
    assert "no lesspy calls recorded" in out
    assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", []))


def test_notebooks_are_committed_clean():
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")
