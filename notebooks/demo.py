"""`make demo`, second half: a C# app that is already running calls a live notebook kernel.

Starts a real Jupyter kernel, runs quickstart.ipynb's set-up cells in it, starts the C# app
(csharp/bin/NotebookDemo.exe) which connects and calls, then redefines `scale` in the kernel while the
app keeps running; the app's next call prints the new result. Ends with the notebook's `%lesspy calls`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat
from jupyter_client.manager import start_new_kernel

HERE = Path(__file__).resolve().parent
APP = HERE.parent / "csharp" / "bin" / "NotebookDemo.exe"


def run_cell(kc, code: str) -> str:
    out = []

    def hook(msg):
        c = msg["content"]
        if msg["msg_type"] == "stream":
            out.append(c["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            out.append(c["data"].get("text/plain", "") + "\n")
        elif msg["msg_type"] == "error":
            out.append("\n".join(c["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=60)
    if reply["content"]["status"] != "ok":
        raise SystemExit(f"cell failed:\n{code}\n{''.join(out)}")
    return "".join(out)


def main() -> int:
    nb = nbformat.read(HERE / "quickstart.ipynb", as_version=4)
    cells = {tag: c.source for c in nb.cells for tag in c.metadata.get("tags", [])}
    setup = [c.source for c in nb.cells[:2] if c.cell_type == "code"] + [cells["functions"]]
    with tempfile.TemporaryDirectory() as runtime:
        env = dict(os.environ, JUPYTER_RUNTIME_DIR=runtime)
        os.environ["JUPYTER_RUNTIME_DIR"] = runtime
        km, kc = start_new_kernel(kernel_name="python3", env=env)
        try:
            print("== notebook: running quickstart.ipynb's set-up cells in a real kernel")
            for code in setup:
                print("\n".join("   In: " + line for line in code.splitlines() if line.strip()))
                print("  " + run_cell(kc, code).replace("\n", "\n  ").rstrip())
            print("== C#: NotebookDemo.exe connects to session 'quickstart' and calls")
            app = subprocess.Popen(["mono", str(APP), "quickstart", "quickstart", "--again"], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True, env=env)
            for line in app.stdout:
                if line.strip() == "READY":
                    break
                print("  C#> " + line.rstrip())
            print("== notebook: redefining scale while the C# app keeps running")
            print("\n".join("   In: " + line for line in cells["redefine"].splitlines()))
            run_cell(kc, cells["redefine"])
            app.stdin.write("\n")
            app.stdin.flush()
            for line in app.stdout:
                print("  C#> " + line.rstrip())
            if app.wait(60) != 0:
                print("the C# app failed", file=sys.stderr)
                return 1
            print("== notebook: %lesspy calls")
            print(run_cell(kc, "%lesspy calls"))
        finally:
            kc.stop_channels()
            km.shutdown_kernel()
    return 0


if __name__ == "__main__":
    sys.exit(main())
