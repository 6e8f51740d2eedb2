"""The product's story with the real pieces: a running Mono app calls a live kernel while the notebook changes."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import compile_csharp
from kernels import FLAVOURS, kernel

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def repl_exe(csharp_bin):
    return compile_csharp(csharp_bin, [ROOT / "tests" / "csharp" / "NotebookRepl.cs"], "NotebookRepl.exe")


class Repl:
    """The C# app, kept running; one command in, one line out, with a timeout."""

    def __init__(self, exe: Path, folder_or_name: str, runtime_dir: Path) -> None:
        env = dict(os.environ, MONO_PATH=str(exe.parent), JUPYTER_RUNTIME_DIR=str(runtime_dir))
        self.proc = subprocess.Popen(["mono", "--debug", str(exe), folder_or_name], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        self.lines: "queue.Queue[str]" = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.first = self.lines.get(timeout=60)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def send(self, command: str, timeout: float = 60) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.lines.get(timeout=timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.mark.parametrize("flavour", FLAVOURS)
def test_running_app_follows_the_notebook(tmp_path, repl_exe, flavour):
    with kernel(tmp_path, flavour) as k:
        k.run("%load_ext lesspy_kernel\n%lesspy serve --name live\nimport time\n"
              "def ping():\n    return 1\ndef scale(x):\n    return x * 2\ndef total(a):\n    return float(a.sum())")
        app = Repl(repl_exe, "live", k.runtime_dir)          # resolves the name like the notebook does
        try:
            assert app.first.startswith("OK connected"), app.first
            assert app.send("scale 2") == "OK 4"
            k.run("def scale(x):\n    return x * 10")
            assert app.send("scale 2") == "OK 20", "re-running a cell changes what the next call runs"
            assert app.send("total 10") == "OK 4950"
            assert app.send("total 3") == "OK 36"
            out = k.run("import numpy as np, lesspy_kernel\nsent = lesspy_kernel.calls()[-2].args[0]\n"
                        "print(sent.shape, sent.dtype, np.array_equal(sent, np.arange(100, dtype=np.float32)"
                        ".reshape(10, 10)))")
            assert "(10, 10) float32 True" in out, "the record keeps what C# sent after the mapping was reused"

            msg = k.start("time.sleep(3)")
            time.sleep(0.5)                              # let the cell begin: a call sent before it would run first
            assert app.send("timeout 700") == "OK"
            line = app.send("ping")
            assert line.startswith("ERR CallTimeoutException") and "a running cell or an earlier call" in line, line
            assert app.send("timeout 20000") == "OK"
            assert app.send("ping") == "OK 1", "after the cell, calls work again (the late reply is dropped)"
            k.wait_idle(msg)

            k.run("%lesspy stop")
            line = app.send("ping")
            assert line.startswith("ERR ServerUnavailableException"), line
            k.run("%lesspy serve --name live")
            assert app.send("ping") == "OK 1", "the app reconnects to the new server by itself"
            assert app.send("quit") == "OK bye"
        finally:
            app.close()


def test_threaded_answers_while_a_cell_blocks(tmp_path, repl_exe):
    with kernel(tmp_path) as k:
        k.run("%load_ext lesspy_kernel\n%lesspy serve --name thr --threaded\nimport time\ndef ping():\n    return 7")
        app = Repl(repl_exe, str(k.folder("thr")), k.runtime_dir)
        try:
            msg = k.start("time.sleep(3)")
            assert app.send("timeout 1500") == "OK"
            assert app.send("ping") == "OK 7"
            k.wait_idle(msg)
        finally:
            app.close()
