"""Real Jupyter kernels for tests: started with jupyter_client, in a private IPYTHONDIR and runtime dir.

Two kernel flavours: ipykernel 7 (this interpreter) and ipykernel 6 (the `.venv-ipk6` that `make test`
creates), because the two schedule main-thread work differently.
"""

from __future__ import annotations

import json
import os
import queue
import sys
from contextlib import contextmanager
from pathlib import Path

from jupyter_client.manager import start_new_kernel

ROOT = Path(__file__).resolve().parent.parent
IPK6_PYTHON = Path(os.environ.get("LESSPY_IPK6_PYTHON", ROOT / ".venv-ipk6" / "bin" / "python"))
FLAVOURS = ["ipykernel7", "ipykernel6"]


# Notebook functions the lane tests call (from Python or from C#): a loop that only an interrupt ends, a plain
# call, and one that records the order calls ran in.
LANE_DEFS = """
%load_ext lesspy_kernel
import time
order = []
def spin():
    n = 0
    while True:
        n += 1
def add(a, b):
    return a + b
def note(tag, seconds):
    order.append(tag)
    time.sleep(seconds)
    return tag
"""


def _kernelspec(home: Path, flavour: str) -> str:
    python = sys.executable if flavour == "ipykernel7" else str(IPK6_PYTHON)
    if not Path(python).exists():
        raise FileNotFoundError(f"{python} is missing: `make test` creates the ipykernel 6 venv (.venv-ipk6)")
    spec = home / "kernels" / f"lesspy-{flavour}"
    spec.mkdir(parents=True, exist_ok=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": flavour, "language": "python"}))
    return f"lesspy-{flavour}"


class Kernel:
    """A started kernel with helpers that always time out instead of hanging."""

    def __init__(self, km, kc, runtime_dir: Path) -> None:
        self.km, self.kc, self.runtime_dir = km, kc, runtime_dir

    def run(self, code: str, timeout: float = 60, allow_error: bool = False) -> str:
        """Execute a cell; return its text output (stream, results, errors)."""
        chunks = []

        def hook(msg):
            t, c = msg["msg_type"], msg["content"]
            if t == "stream":
                chunks.append(c["text"])
            elif t in ("execute_result", "display_data"):
                chunks.append(c["data"].get("text/plain", "") + "\n")
            elif t == "error":
                chunks.append("\n".join(c["traceback"]) + "\n")

        reply = self.kc.execute_interactive(code, output_hook=hook, timeout=timeout)
        out = "".join(chunks)
        if reply["content"]["status"] != "ok" and not allow_error:
            raise AssertionError(f"cell failed:\n{code}\n---\n{out}")
        return out

    def start(self, code: str) -> str:
        """Send a cell without waiting for it (e.g. one that sleeps); returns the msg id."""
        return self.kc.execute(code)

    def wait_idle(self, msg_id: str, timeout: float = 60) -> None:
        while True:
            msg = self.kc.get_iopub_msg(timeout=timeout)
            if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                    and msg["content"]["execution_state"] == "idle":
                return

    def drain(self) -> None:
        try:
            while True:
                self.kc.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            pass

    def folder(self, name: str) -> Path:
        return self.runtime_dir / "lesspy" / name


@contextmanager
def kernel(tmp_path: Path, flavour: str = "ipykernel7"):
    home = tmp_path / "jupyter"
    runtime = home / "runtime"
    env = dict(os.environ, IPYTHONDIR=str(tmp_path / "ipython"), JUPYTER_RUNTIME_DIR=str(runtime),
               JUPYTER_DATA_DIR=str(home), JUPYTER_PATH=str(home), PYTHONPATH=str(ROOT / "tests"))
    old = {k: os.environ.get(k) for k in ("JUPYTER_PATH", "JUPYTER_DATA_DIR")}
    os.environ.update(JUPYTER_PATH=str(home), JUPYTER_DATA_DIR=str(home))
    try:
        name = _kernelspec(home, flavour)
        km, kc = start_new_kernel(kernel_name=name, env=env, cwd=str(tmp_path), startup_timeout=60)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    k = Kernel(km, kc, runtime)
    try:
        yield k
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=False)
